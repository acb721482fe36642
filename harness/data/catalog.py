"""The catalog of datasets: the 18 BEIR datasets, MS MARCO and the bundled sample, with their facts.

Beyond the catalog, a dataset may be named by an ir_datasets id (`irds:beir/scifact/test`, see
`harness.data.irds`) or by a path to the user's own corpus (see `harness.data.local`).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError, close_matches

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"

CQADUPSTACK_FORUMS = (
    "android", "english", "gaming", "gis", "mathematica", "physics",
    "programmers", "stats", "tex", "unix", "webmasters", "wordpress",
)  # fmt: skip


@dataclass(frozen=True)
class Dataset:
    """One dataset: where it comes from, its evaluation split and the rules for scoring it."""

    name: str
    title: str
    split: str = "test"
    corpus_size: int | None = None
    queries: int | None = None  # in the evaluation split
    public: bool = True
    how_to_get: str = ""
    # ArguAna and Quora: a query is itself a document of the corpus; pyserini drops that hit
    # (`--remove-query`), else it ranks first and inflates nothing but confuses the comparison.
    remove_query: bool = False
    subsets: tuple[str, ...] = ()  # CQADupStack: scored per forum and averaged into one row
    hub_repo: str | None = None  # BeIR/<name> (corpus, queries); qrels in BeIR/<name>-qrels
    in_beir18: bool = True
    kind: str = "catalog"  # catalog | irds (an ir_datasets id) | path (the user's own folder or corpus file)
    location: str = ""  # kind path: the folder or corpus file
    has_qrels: bool = True  # without judgments a pipeline trains a reranker and skips evaluation

    @property
    def is_group(self) -> bool:
        return bool(self.subsets)

    def download_hint(self) -> str:
        if not self.public:
            return self.how_to_get
        return (
            f"download {BEIR_URL.format(name=self.name.split('/')[0])} and unzip it into the data folder "
            f"(--data-dir or HARNESS_BEIR_DIR), or use `--source hub` to read the {self.hub_repo} copy"
        )


def _restricted(name: str, title: str, how: str, **kw) -> Dataset:
    return Dataset(name, title, public=False, how_to_get=how, hub_repo=None, **kw)


# Sizes as in the BEIR paper (Thakur et al. 2021, Table 1).
_DATASETS = [
    Dataset("msmarco", "MS MARCO", split="dev", corpus_size=8_841_823, queries=6_980, in_beir18=False),
    Dataset("trec-covid", "TREC-COVID", corpus_size=171_332, queries=50),
    Dataset("nfcorpus", "NFCorpus", corpus_size=3_633, queries=323),
    Dataset("nq", "NQ", corpus_size=2_681_468, queries=3_452),
    Dataset("hotpotqa", "HotpotQA", corpus_size=5_233_329, queries=7_405),
    Dataset("fiqa", "FiQA-2018", corpus_size=57_638, queries=648),
    Dataset("arguana", "ArguAna", corpus_size=8_674, queries=1_406, remove_query=True),
    Dataset("webis-touche2020", "Touché-2020", corpus_size=382_545, queries=49),
    Dataset("cqadupstack", "CQADupStack", corpus_size=457_199, queries=13_145, subsets=CQADUPSTACK_FORUMS),
    Dataset("quora", "Quora", corpus_size=522_931, queries=10_000, remove_query=True),
    Dataset("dbpedia-entity", "DBPedia", corpus_size=4_635_922, queries=400),
    Dataset("scidocs", "SCIDOCS", corpus_size=25_657, queries=1_000),
    Dataset("fever", "FEVER", corpus_size=5_416_568, queries=6_666),
    Dataset("climate-fever", "Climate-FEVER", corpus_size=5_416_593, queries=1_535),
    Dataset("scifact", "SciFact", corpus_size=5_183, queries=300),
    _restricted(
        "bioasq", "BioASQ",
        "register at http://participants-area.bioasq.org, download the Task B data and convert it with "
        "BEIR's bioasq script into <data-dir>/bioasq",
        corpus_size=14_914_602, queries=500,
    ),
    _restricted(
        "signal1m", "Signal-1M (RT)",
        "request the Signal-1M corpus from https://research.signal-ai.com/datasets/signal1m.html and build "
        "<data-dir>/signal1m with BEIR's scripts",
        corpus_size=2_866_316, queries=97,
    ),
    _restricted(
        "trec-news", "TREC-NEWS",
        "request the Washington Post collection from https://trec.nist.gov/data/wapost/ and build "
        "<data-dir>/trec-news with BEIR's scripts",
        corpus_size=594_977, queries=57,
    ),
    _restricted(
        "robust04", "Robust04",
        "obtain TREC Disks 4 and 5 from NIST (https://trec.nist.gov/data/cd45/) and build <data-dir>/robust04 "
        "with BEIR's scripts",
        corpus_size=528_155, queries=249,
    ),
    Dataset(
        "sample", "Sample (bundled)", corpus_size=None, queries=None, in_beir18=False,
        how_to_get="built in: generated on first use",
    ),
]  # fmt: skip

DATASETS: dict[str, Dataset] = {
    d.name: (d if not d.public or d.name == "sample" else Dataset(**{**d.__dict__, "hub_repo": f"BeIR/{d.name}"}))
    for d in _DATASETS
}

GROUPS = {
    "beir": [d.name for d in DATASETS.values() if d.in_beir18],
    "beir-public": [d.name for d in DATASETS.values() if d.in_beir18 and d.public],
}


def get_dataset(name: str) -> Dataset:
    """The dataset named `name` (a subforum as `cqadupstack/android`), or an error with close matches.

    `irds:<id>` names an ir_datasets collection; a path (or the name of a folder given by path earlier
    in this process) names the user's own corpus.
    """
    if name.startswith("irds:"):
        from harness.data import irds

        return irds.describe(name)
    base, _, sub = name.partition("/")
    if base in DATASETS:
        dataset = DATASETS[base]
        if not sub:
            return dataset
        if sub in dataset.subsets:
            return Dataset(**{**dataset.__dict__, "name": name, "title": f"{dataset.title} ({sub})", "subsets": ()})
        raise HarnessError(f"Dataset {base!r} has no subset {sub!r}.{close_matches(sub, dataset.subsets)}")
    from harness.data import local

    found = local.describe(name)
    if found is not None:
        return found
    raise HarnessError(
        f"Unknown dataset {name!r}.{close_matches(name, [*DATASETS, *GROUPS])} "
        f"Known: {', '.join(DATASETS)} and the groups {', '.join(GROUPS)}; or an ir_datasets id as "
        "irds:<id>, or the path of a folder in BEIR layout or of a corpus file."
    )


def expand(names: list[str]) -> list[str]:
    """Dataset names with the groups `beir` (18) and `beir-public` (14) expanded, duplicates removed."""
    out: list[str] = []
    for name in names:
        for item in GROUPS.get(name, [name]):
            item = get_dataset(item).name  # a path becomes the name of its folder
            if item not in out:
                out.append(item)
    return out


def members(name: str) -> list[str]:
    """The datasets actually scored for `name`: its subsets (CQADupStack), or itself."""
    dataset = get_dataset(name)
    return [f"{name}/{s}" for s in dataset.subsets] if dataset.is_group else [name]
