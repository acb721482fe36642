"""T5 attention with the merged position-bias mask reused across layers: bitwise the scores of `sdpa`."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from harness.models import bias_attention


@pytest.fixture(scope="module")
def reranker(tmp_path_factory):
    from harness.models.rerankers import load_reranker
    from harness.models.tiny import materialize

    return load_reranker(materialize("tiny:t5", tmp_path_factory.getbasetemp() / "models"), "monot5", batch_size=3)


def test_reranker_scores_are_bitwise_those_of_sdpa(reranker):
    queries = ["caffeine pregnancy", "bees", "volcano ash", "tides and the moon", "insulin"]
    docs = ["coffee " * 40, "bees pollinate flowers", "lava " * 17, "the moon moves the ocean " * 6, "glucose"]
    assert reranker.model.encoder.config._attn_implementation == bias_attention.IMPLEMENTATION
    assert reranker.model.decoder.config._attn_implementation == bias_attention.IMPLEMENTATION
    ours = reranker.score(queries, docs)  # batches of 3 mixing lengths: padding masked in the merged mask
    reranker.model.set_attn_implementation("sdpa")
    try:
        plain = reranker.score(queries, docs)
    finally:
        bias_attention.use(reranker.model)
    assert ours == plain
    assert not bias_attention._last  # the merged mask is not kept after scoring


def test_only_sdpa_models_are_switched(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    eager = T5ForConditionalGeneration(T5Config(d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8,
                                                vocab_size=50, attn_implementation="eager"))
    assert not bias_attention.use(eager) and eager.config._attn_implementation == "eager"
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, bos_token_id=0,
                                      eos_token_id=0)).eval()  # no position bias
    assert bias_attention.use(gpt2)
    ids = torch.tensor([[1, 2, 3, 4]])
    switched = gpt2(ids).logits
    gpt2.set_attn_implementation("sdpa")
    torch.testing.assert_close(switched, gpt2(ids).logits, atol=0, rtol=0)  # no bias: plain sdpa, unchanged
