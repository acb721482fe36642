"""Facts about the published artifacts that registry.yaml states, each with its public source.

Sources (read for this file; cite them when a fact changes):
- AUTHORS: GitHub zetaalphavector/InPars at 9865521, `legacy/inpars-v2/train_inpars.py` lines 27-64 (the
  authors' dataset names beside BEIR's), `legacy/inpars-v2/download_data.py` line 72 and `inpars/utils.py` line 7 (the
  BM25 run URL `.../unicamp-dl/beir-runs/resolve/main/bm25/run.beir-v1.0.0-{dataset}-flat.trec`).
- IR2: GitHub danilotpnta/IR2-project at 5387239, `src/reproduce.py` lines 440-468, a public reproduction
  that loads `zeta-alpha-ai/monot5-3b-inpars-v2-{model_name_inpars}` and
  `inpars/monot5-3b-inpars-v2-{model_name_promptagator}-promptagator`.
- HUB: the `inpars/generated-data` dataset's commit 886abbc "Add missing data", which adds `bioasq/`
  (recorded in ../shared/reference/inpars-method.md, "InPars-v2 synthetic data" row, corrected 2026-12-04).
"""

from __future__ import annotations

import pytest

from harness.data.catalog import CQADUPSTACK_FORUMS
from harness.registry import Registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return Registry(tmp_path_factory.mktemp("home"))  # the project's registry.yaml (no user entries)


# AUTHORS train_inpars.py `datasets`, zipped with its `pyserini_names` (BEIR's names).
AUTHORS_NAMES = {"bioasq": "bioasq", "dbpedia-entity": "dbpedia", "fiqa": "fiqa", "nfcorpus": "nfcorpus",
                 "robust04": "robust04", "scidocs": "scidocs", "scifact": "scifact", "signal1m": "signal",
                 "webis-touche2020": "touche", "trec-covid": "trec_covid", "trec-news": "trecnews",
                 "arguana": "arguana", "climate-fever": "climate_fever", "nq": "nq", "fever": "fever",
                 "hotpotqa": "hotpotqa", "quora": "quora"}
# IR2 src/reproduce.py lines 440-452 (`model_name_inpars`) and 454-465 (`model_name_promptagator`).
IR2_INPARS = {"trec-covid": "trec_covid", "nfcorpus": "nfcorpus", "hotpotqa": "hotpotqa", "fiqa": "fiqa",
              "arguana": "arguana", "webis-touche2020": "touche", "dbpedia-entity": "dbpedia", "scidocs": "scidocs",
              "fever": "fever", "climate-fever": "climate_fever", "scifact": "scifact"}
IR2_PROMPTAGATOR = {"trec-covid": "trec-covid", "nfcorpus": "nfcorpus", "hotpotqa": "hotpotqa", "fiqa": "fiqa",
                    "arguana": "arguana", "webis-touche2020": "webis-touche2020", "dbpedia-entity": "dbpedia",
                    "scidocs": "scidocs", "fever": "fever", "scifact": "scifact"}


def test_v2_rerankers_named_as_a_public_reproduction_loads_them(registry):
    """IR2 lines 440-452, 467: `zeta-alpha-ai/monot5-3b-inpars-v2-{trec_covid,touche,dbpedia,climate_fever,...}`."""
    for dataset, name in IR2_INPARS.items():
        entry = registry.get(f"inpars-v2/{dataset}/reranker")
        assert entry.repo == f"zeta-alpha-ai/monot5-3b-inpars-v2-{name}" and entry.unverified is None, dataset


def test_v2_rerankers_without_public_evidence_follow_the_authors_names_and_say_unverified(registry):
    """AUTHORS train_inpars.py names Signal-1M `signal` and TREC-NEWS `trecnews`; no code or page names the repos."""
    for dataset in ("signal1m", "trec-news"):
        entry = registry.get(f"inpars-v2/{dataset}/reranker")
        assert entry.repo == f"zeta-alpha-ai/monot5-3b-inpars-v2-{AUTHORS_NAMES[dataset]}"
        assert entry.unverified and "no public code or page" in entry.unverified


def test_no_v2_reranker_uses_a_beir_name_where_the_authors_used_their_own(registry):
    """The four renamed datasets plus the two unverified ones: none keeps BEIR's spelling."""
    renamed = {d: n for d, n in AUTHORS_NAMES.items() if d != n}
    for dataset, name in renamed.items():
        entry = registry.find(f"inpars-v2/{dataset}/reranker")
        if entry is not None:
            assert entry.repo.endswith(f"-inpars-v2-{name}"), entry.repo


def test_promptagator_rerankers_are_the_ones_a_public_reproduction_loads(registry):
    """IR2 lines 454-468: `inpars/monot5-3b-inpars-v2-{name}-promptagator` for ten datasets (not climate-fever,
    not nq): dbpedia-entity and scidocs are registered; climate-fever and nq have no evidence and no entry."""
    for dataset, name in IR2_PROMPTAGATOR.items():
        entry = registry.get(f"promptagator/{dataset}/reranker")
        assert entry.repo == f"inpars/monot5-3b-inpars-v2-{name}-promptagator", dataset
    assert registry.find("promptagator/climate-fever/reranker") is None
    assert registry.find("promptagator/nq/reranker") is None
    registered = {e.dataset for e in registry.entries.values() if e.id.startswith("promptagator/")}
    assert registered == set(IR2_PROMPTAGATOR)


def test_bioasq_synthetic_data_is_registered(registry):
    """HUB: commit 886abbc "Add missing data" adds bioasq/{queries.jsonl, queries_filtered_v2.jsonl,
    triples_train_v2.tsv}."""
    files = {"queries": "bioasq/queries.jsonl", "queries-filtered": "bioasq/queries_filtered_v2.jsonl",
             "triples": "bioasq/triples_train_v2.tsv"}
    for kind, path in files.items():
        entry = registry.get(f"inpars-v2/bioasq/{kind}")
        assert entry.repo == "inpars/generated-data" and entry.files == [path] and entry.kind == kind


def test_bm25_runs_follow_the_authors_url_and_msmarco_says_it_is_unverified(registry):
    """AUTHORS inpars/utils.py line 7: `bm25/run.beir-v1.0.0-{dataset}-flat.trec`; no script names MS MARCO's file."""
    runs = [e for e in registry.entries.values() if e.repo == "unicamp-dl/beir-runs"]
    assert len(runs) > 18
    for entry in runs:
        if entry.dataset == "msmarco":
            assert entry.unverified and "no public code or page names this file" in entry.unverified
        else:
            name = entry.dataset.replace("/", "-")  # cqadupstack/android → cqadupstack-android
            assert entry.files == [f"bm25/run.beir-v1.0.0-{name}-flat.trec"], entry.id


def test_cqadupstack_hub_copies_are_registered_per_forum(registry):
    """Issue 17: `BeIR/cqadupstack` and `BeIR/cqadupstack-qrels` (`<forum>/test.tsv`), so `--source hub` serves it."""
    from harness.fetch import beir_entries

    for forum in CQADUPSTACK_FORUMS:
        corpus_id, qrels_id = beir_entries(f"cqadupstack/{forum}")
        assert registry.get(qrels_id).repo == "BeIR/cqadupstack-qrels"
        assert registry.get(qrels_id).files == [f"{forum}/test.tsv"]
        corpus = registry.get(corpus_id)
        assert corpus.repo == "BeIR/cqadupstack" and corpus.unverified  # the corpus layout is assumed


def test_usability_is_a_field_and_every_unusable_entry_says_why(registry):
    """Issue 19: a note's word "empty" no longer decides; the empty gaming reranker is `usable: false`."""
    assert registry.find("inpars-v2/cqadupstack/gaming/reranker").usable is False
    for entry in registry.entries.values():
        assert entry.usable or entry.known_gap, entry.id
        if entry.known_gap and "empty" in entry.known_gap:
            assert not entry.usable, entry.id


def test_no_entry_names_a_preferred_revision_without_evidence(registry):
    """No public code or page found names the safetensors pull request of a zeta-alpha-ai repository."""
    assert [e.id for e in registry.entries.values() if e.revision] == []


def test_find_returns_what_get_refuses(registry):
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="regenerate this stage"):
        registry.get("inpars-v2/cqadupstack/gaming/reranker")
    assert registry.find("inpars-v2/cqadupstack/gaming/reranker").known_gap
    assert registry.find("no/such/entry") is None
