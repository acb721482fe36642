"""Prompt templates: byte-for-byte the reference text, the prompt's end, examples, truncation, user files."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.prompts import Example, PromptBuilder, Template, builtin_names, load_template

# The reference text of inpars-method.md (itself the toolkit's templates.yaml), verbatim; a `\` at a line's end
# continues the line.
INPARS = """Example 1:
Document: We don't know a lot about the effects of caffeine during pregnancy on you and your baby. So it's best to \
limit the amount you get each day. If you are pregnant, limit caffeine to 200 milligrams each day. This is about the \
amount in 1½ 8-ounce cups of coffee or one 12-ounce cup of coffee.
Relevant Query: Is a little caffeine ok during pregnancy?

Example 2:
Document: Passiflora herbertiana. A rare passion fruit native to Australia. Fruits are green-skinned, white fleshed, \
with an unknown edible rating. Some sources list the fruit as edible, sweet and tasty, while others list the fruits \
as being bitter and inedible.assiflora herbertiana. A rare passion fruit native to Australia. Fruits are \
green-skinned, white fleshed, with an unknown edible rating. Some sources list the fruit as edible, sweet and tasty, \
while others list the fruits as being bitter and inedible.
Relevant Query: What fruit is native to Australia?

Example 3:
Document: The Canadian Armed Forces. 1  The first large-scale Canadian peacekeeping mission started in Egypt on \
November 24, 1956. 2  There are approximately 65,000 Regular Force and 25,000 reservist members in the Canadian \
military. 3  In Canada, August 9 is designated as National Peacekeepers' Day.
Relevant Query: How large is the canadian military?

Example 4:
Document: {document}
Relevant Query: {query}
"""

GBQ_EXAMPLES = [
    ("We don't know a lot about the effects of caffeine during pregnancy on you and your baby. So it's best to limit "
     "the amount you get each day. If you are pregnant, limit caffeine to 200 milligrams each day. This is about the "
     "amount in 1½ 8-ounce cups of coffee or one 12-ounce cup of coffee.",
     "How much caffeine is ok for a pregnant woman to have?", "Is a little caffeine ok during pregnancy?"),
    ("Passiflora herbertiana. A rare passion fruit native to Australia. Fruits are green-skinned, white fleshed, with "
     "an unknown edible rating. Some sources list the fruit as edible, sweet and tasty, while others list the fruits "
     "as being bitter and inedible.",
     "What is Passiflora herbertiana (a rare passion fruit) and how does it taste like?",
     "What fruit is native to Australia?"),
    ("The Canadian Armed Forces. 1  The first large-scale Canadian peacekeeping mission started in Egypt on November "
     "24, 1956. 2  There are approximately 65,000 Regular Force and 25,000 reservist members in the Canadian military. "
     "3  In Canada, August 9 is designated as National Peacekeepers' Day.",
     "Information on the Canadian Armed Forces size and history.", "How large is the Canadian military?"),
]

PROMPTAGATOR = {
    "arguana": "Argument: {document}\nCounter argument: {query}\n",
    "fiqa": "{document}\n{query}\n",
    "hotpotqa": "Evidence: {document}\nVexed question: {query}\n",
    "dbpedia-entity": "entity: {document}\nquery: {query}\n",
    "nfcorpus": "Article: {document}\nQuery: {query}\n",
    "webis-touche2020": "{document}\nDebate: {query}\n",
    "trec-covid": "{document}\nQuestion: {query}\n",
    "scifact": "{document}\nFinding: {query}\n",
    "scidocs": "{document}\nThe passage is about {query}\n",
    "fever": "{document}\nIs it true that {query}\n",
}


class WordTokenizer:
    """A stand-in tokenizer: one token per space-separated word (enough to test budgets)."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": text.split(" ")}

    def decode(self, ids):
        return " ".join(ids)


def test_inpars_prompt_is_the_reference_text_byte_for_byte():
    prompt, examples = PromptBuilder(load_template("inpars"), WordTokenizer()).build("d1", "Bees make honey.")
    expected = INPARS.replace("{document}", "Bees make honey.").split(" {query}")[0]
    assert prompt.encode("utf-8") == expected.encode("utf-8") and examples == []
    assert load_template("inpars").text == INPARS


def test_gbq_prompt_is_the_reference_text():
    expected = "".join(
        f"Example {i}:\nDocument: {doc}\nGood Question: {good}\nBad Question: {bad}\n\n"
        for i, (doc, good, bad) in enumerate(GBQ_EXAMPLES, 1)
    ) + "Example 4:\nDocument: Tides follow the moon.\nGood Question:"
    prompt, _ = PromptBuilder(load_template("inpars-gbq"), WordTokenizer()).build("d1", "Tides follow the moon.")
    assert prompt == expected


def test_the_ten_promptagator_templates():
    assert sorted(n for n in builtin_names() if n.startswith("promptagator-")) == sorted(
        f"promptagator-{d}" for d in PROMPTAGATOR)
    for dataset, text in PROMPTAGATOR.items():
        assert load_template(f"promptagator-{dataset}").text == text


def test_promptagator_prompt_repeats_the_template_per_example_shuffled_per_document():
    examples = [Example(f"q{i}", f"d{i}", f"query {i}", f"document {i}") for i in range(4)]
    builder = PromptBuilder(load_template("promptagator-scifact"), WordTokenizer(), examples=examples, seed=1)
    prompt, ids = builder.build("target", "the target document")
    assert sorted(ids) == ["q0", "q1", "q2", "q3"]
    shots = "".join(f"document {q[1:]}\nFinding: query {q[1:]}\n" for q in ids)
    assert prompt == shots + "the target document\nFinding:"
    orders = {tuple(builder.build(f"doc{i}", "x")[1]) for i in range(12)}
    assert len(orders) > 1  # shuffled per document
    assert builder.build("doc3", "x") == builder.build("doc3", "x")  # deterministically


def test_fiqa_keeps_the_newline_before_the_empty_query():
    builder = PromptBuilder(load_template("promptagator-fiqa"), WordTokenizer(), examples=[Example("q", "d", "Q", "D")])
    assert builder.build("x", "doc")[0] == "D\nQ\ndoc\n"


def test_documents_and_examples_are_cut_to_their_token_budgets():
    examples = [Example("q0", "d0", "a b c d e", "one two three four five six")]
    builder = PromptBuilder(load_template("promptagator-scifact"), WordTokenizer(), examples=examples,
                            max_doc_tokens=3, example_tokens=2, example_query_tokens=4)
    prompt, _ = builder.build("t", "w1 w2 w3 w4 w5")
    assert prompt == "one two\nFinding: a b c d\nw1 w2 w3\nFinding:"


def test_example_documents_share_what_is_left_of_the_prompt_budget():
    """As the toolkit's `DynamicPrompt.build` cuts each example's document, with the cut chosen to fit the prompt."""
    examples = [Example(f"q{i}", f"d{i}", "a b", " ".join(["w"] * 10)) for i in range(2)]
    template = load_template("promptagator-scifact")  # "{document}\nFinding: {query}\n"

    def builder(**kw):
        return PromptBuilder(template, WordTokenizer(), examples=examples, max_doc_tokens=3, **kw)

    # 20 tokens: the target's 1 + 3, each example's template and query 3 ("\nFinding:", "a", "b\n"): 5 words each
    fitted = builder(max_prompt_tokens=20, example_tokens=8)
    assert fitted.example_doc_tokens == 5
    prompt, _ = fitted.build("t", "t1 t2 t3 t4")
    assert prompt == "w w w w w\nFinding: a b\n" * 2 + "t1 t2 t3\nFinding:"
    assert len(WordTokenizer()(prompt)["input_ids"]) <= 20
    assert builder(max_prompt_tokens=20, example_tokens=2).example_doc_tokens == 2  # already shorter: kept
    assert builder(example_tokens=8).example_doc_tokens == 8  # no budget given: example_tokens alone
    with pytest.raises(HarnessError, match="no room in 9 prompt tokens"):
        builder(max_prompt_tokens=9)


def test_static_prefix_ends_with_a_newline_before_the_document():
    prefix = load_template("inpars").static_prefix()
    assert prefix.endswith("Example 4:\n") and INPARS.startswith(prefix)
    assert load_template("promptagator-scifact").static_prefix() == ""


def test_a_users_template_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("Passage: {document}\nQuestion: {query}\n")
    builder = PromptBuilder(load_template(str(path)), WordTokenizer())
    assert builder.build("d", "text")[0] == "Passage: text\nQuestion:"
    dynamic = tmp_path / "mine.yaml"
    dynamic.write_text('mode: dynamic\ntemplate: "D: {document}\\nQ: {query}\\n"\n')
    assert load_template(str(dynamic)).dynamic


def test_bad_names_and_templates_are_clear_errors(tmp_path):
    with pytest.raises(HarnessError, match="Did you mean .scifact."):
        load_template("promptagator-scifac")
    with pytest.raises(HarnessError, match="neither a built-in"):
        load_template("inpar")
    with pytest.raises(HarnessError, match="once"):
        Template("x", "no slots here", dynamic=False)
    with pytest.raises(HarnessError, match="few-shot"):
        PromptBuilder(load_template("promptagator-fever"), WordTokenizer())
