"""The bundled sample: a small deterministic BEIR-format dataset, generated offline in a second."""

from __future__ import annotations

import random
from pathlib import Path

from harness.data.beir import write_jsonl, write_qrels

SEED = 13
N_DOCS = 400
N_TEST = 60
N_TRAIN = 120

_TOPICS = {
    "caffeine": "caffeine coffee pregnancy intake milligrams cups tea",
    "vaccines": "vaccine antibody immune dose trial efficacy booster",
    "insulin": "insulin glucose diabetes pancreas sugar resistance",
    "volcano": "volcano lava eruption magma crater ash tectonic",
    "glacier": "glacier ice melting arctic sea level warming",
    "bees": "bees pollination hive honey colony flowers nectar",
    "tides": "tides moon ocean gravity coast wave current",
    "bridges": "bridge steel cable suspension load span engineer",
    "neurons": "neuron synapse brain signal dopamine cortex memory",
    "bacteria": "bacteria antibiotic resistance infection microbe gut",
    "solar": "solar panel photovoltaic energy sunlight silicon cell",
    "wheat": "wheat harvest grain soil fertilizer yield drought",
    "whales": "whale migration sonar krill pod humpback ocean",
    "rockets": "rocket orbit launch thrust fuel satellite payload",
    "malaria": "malaria mosquito parasite fever quinine tropical",
    "bread": "bread yeast dough flour baking oven gluten",
    "chess": "chess opening gambit king bishop endgame grandmaster",
    "rainforest": "rainforest canopy species biodiversity logging amazon",
    "cholesterol": "cholesterol artery heart statin lipid diet",
    "earthquake": "earthquake fault seismic magnitude richter aftershock",
    "printing": "printing press gutenberg ink paper books type",
    "vitamin": "vitamin deficiency sunlight bone calcium supplement",
    "copper": "copper wire conductivity metal ore mining alloy",
    "sleep": "sleep circadian melatonin insomnia rem dreams",
    "coral": "coral reef bleaching algae temperature fish",
    "tea": "tea leaves green oolong brewing antioxidants",
    "railway": "railway train locomotive track steam station",
    "asthma": "asthma inhaler airway allergen wheeze lungs",
    "penguins": "penguin antarctic colony egg chick krill",
    "batteries": "battery lithium charge electrode capacity cycle",
}
_FILLER = (
    "the a of in and to with study results shows effect during new patients report data analysis "
    "levels increase decrease long term risk higher lower may can found across several recent"
).split()
_TEMPLATES = (
    "what is the effect of {a} on {b}",
    "how does {a} affect {b} {c}",
    "{a} and {b} in {c}",
    "does {a} increase {b}",
    "why do {a} {b} matter",
)


def _doc(rng: random.Random, topic: str, words: list[str], other: list[str]) -> dict:
    sentences = []
    for _ in range(rng.randint(3, 6)):
        picked = rng.sample(words, 3) + rng.sample(_FILLER, 4) + [rng.choice(other)]
        rng.shuffle(picked)
        sentences.append(" ".join(picked).capitalize() + ".")
    return {"title": f"{topic.capitalize()}: {' '.join(rng.sample(words, 2))}", "text": " ".join(sentences)}


def build(out: Path) -> dict:
    """Write corpus.jsonl, queries.jsonl, qrels/test.tsv and qrels/train.tsv into `out`; returns counts."""
    rng = random.Random(SEED)
    topics = sorted(_TOPICS)
    vocab = sorted({w for t in topics for w in _TOPICS[t].split()})
    docs, doc_words = [], {}
    for i in range(N_DOCS):
        topic = topics[i % len(topics)]
        words = _TOPICS[topic].split()
        doc = {"_id": f"d{i:04d}", **_doc(rng, topic, words, vocab)}
        docs.append(doc)
        doc_words[doc["_id"]] = sorted(set(doc["text"].lower().replace(".", "").split()) & set(vocab))
    queries: list[dict] = []
    test: dict[str, dict[str, int]] = {}
    train: dict[str, dict[str, int]] = {}
    picked = rng.sample([d["_id"] for d in docs], N_TEST + N_TRAIN)
    for n, doc_id in enumerate(picked):
        words = doc_words[doc_id]
        a, b, c = (rng.sample(words, 3) if len(words) >= 3 else (words * 3)[:3])
        qid = f"q{n:03d}"
        queries.append({"_id": qid, "text": rng.choice(_TEMPLATES).format(a=a, b=b, c=c)})
        (test if n < N_TEST else train)[qid] = {doc_id: 1}
    write_jsonl(docs, out / "corpus.jsonl")
    write_jsonl(queries, out / "queries.jsonl")
    write_qrels(test, out / "qrels" / "test.tsv")
    write_qrels(train, out / "qrels" / "train.tsv")
    return {"documents": len(docs), "queries": len(queries), "test": len(test), "train": len(train)}


def vocabulary_text() -> str:
    """The sample's words as text: tiny models' tokenizers learn them, so that even a random tiny LM
    writes queries made of the sample's words (and BM25 finds documents for them)."""
    words = sorted({w for t in _TOPICS.values() for w in t.split()} | set(_FILLER))
    return " ".join(words) + "\n" + "\n".join(f"{w} {w}s {w}ing" for w in words)
