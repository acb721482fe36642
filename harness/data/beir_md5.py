"""The MD5 sums BEIR publishes for its dataset zips: every download is checked against them, whatever the mirror."""

from __future__ import annotations

from typing import NamedTuple


class BeirZip(NamedTuple):
    md5: str
    size: int  # bytes, as recorded with the sum (a hint for the progress bar, not a check)


# Source: ir_datasets 0.6.3, `ir_datasets/etc/downloads.json`, section "beir" (the zips at
# https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/<name>.zip); the same sums as the
# md5 column of BEIR's README (github.com/beir-cellar/beir, "Available Datasets").
# Touché-2020: the BEIR URL serves the second version of the dataset (qrels corrected in 2021), whose sum
# ir_datasets records as "webis-touche2020/v2"; that is the sum kept here, since it is that URL we fetch.
# The restricted datasets (bioasq, signal1m, trec-news, robust04) have no zip and so no sum.
PUBLISHED: dict[str, BeirZip] = {
    "msmarco": BeirZip("444067daf65d982533ea17ebd59501e4", 1_082_258_632),
    "trec-covid": BeirZip("ce62140cb23feb9becf6270d0d1fe6d1", 73_876_720),
    "nfcorpus": BeirZip("a89dba18a62ef92f7d323ec890a0d38d", 2_448_432),
    "nq": BeirZip("d4d3d2e48787a744b6f6e691ff534307", 498_307_926),
    "hotpotqa": BeirZip("f412724f78b0d91183a0e86805e16114", 654_025_350),
    "fiqa": BeirZip("17918ed23cd04fb15047f73e6c3bd9d9", 17_948_027),
    "arguana": BeirZip("8ad3e3c2a5867cdced806d6503f29b99", 3_773_617),
    "webis-touche2020": BeirZip("46f650ba5a527fc69e0a6521c5a23563", 227_132_363),
    "cqadupstack": BeirZip("4e41456d7df8ee7760a7f866133bda78", 5_343_728_040),
    "quora": BeirZip("18fb154900ba42a600f84b839c173167", 15_853_968),
    "dbpedia-entity": BeirZip("c2a39eb420a3164af735795df012ac2c", 639_285_131),
    "scidocs": BeirZip("38121350fc3a4d2f48850f6aff52e4a9", 142_471_588),
    "fever": BeirZip("5a818580227bfb4b35bb6fa46d9b6c03", 1_236_988_269),
    "climate-fever": BeirZip("8b66f0a9126c521bae2bde127b4dc99d", 1_228_666_652),
    "scifact": BeirZip("5f7d1de60b170fc8027bb7898e2efca1", 2_816_079),
}
