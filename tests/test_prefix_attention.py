"""Shared-prefix attention against the plain model: same logits for prefill and every decoding step."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from harness.models import prefix_attention


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_positions=128)).eval()


def llama():
    """Grouped-query attention (4 query heads, 2 key/value heads) and rotary positions."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=97, max_position_embeddings=128)
    return LlamaForCausalLM(config).eval()


def plain_logits(model, ids: list[int]):
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0]


@pytest.mark.parametrize("make", [gpt2, llama])
@pytest.mark.parametrize("prefix_len", [0, 9])
def test_prefill_and_decoding_equal_the_plain_forward(make, prefix_len):
    model = make()
    assert prefix_attention.supported(model)
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(0, 97, (prefix_len,), generator=g).tolist()
    rows = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (5, 12, 1, 8)]
    fed = [torch.randint(0, 97, (3,), generator=g).tolist() for _ in rows]  # tokens fed at the steps
    with torch.inference_mode():
        batch = prefix_attention.PrefixAttention(model, prefix).rows(rows, 3, prefill_tokens=14)  # packs [5], [12, 1], [8]
        got = [batch.first]
        alive = torch.arange(len(rows))
        for t in range(2):
            got.append(batch.step(torch.tensor([f[t] for f in fed]), alive))
        batch.select(torch.tensor([3, 1]))  # rows leave the batch; the others go on unchanged
        last = batch.step(torch.tensor([fed[3][2], fed[1][2]]), torch.arange(2))
    for r, row in enumerate(rows):
        want = plain_logits(model, prefix + row + fed[r])
        base = len(prefix) + len(row) - 1
        for t in range(3):
            torch.testing.assert_close(got[t][r], want[base + t], atol=2e-5, rtol=1e-4)
    for j, r in enumerate([3, 1]):
        want = plain_logits(model, prefix + rows[r] + fed[r])
        torch.testing.assert_close(last[j], want[len(prefix) + len(rows[r]) + 2], atol=2e-5, rtol=1e-4)


def test_packing_respects_the_budget_and_the_order():
    rows = [[0] * n for n in (5, 12, 1, 8, 20)]
    assert prefix_attention._packed(rows, 14) == [[0], [1, 2], [3], [4]]
    assert prefix_attention._packed(rows, 1000) == [[0, 1, 2, 3, 4]]


def test_models_needing_more_than_a_causal_mask_are_not_supported():
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(num_hidden_layers=1, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=97, sliding_window=16)
    assert not prefix_attention.supported(MistralForCausalLM(config))
    assert not prefix_attention.supported(gpt2().transformer)  # no LM head: no logits_to_keep


def test_the_model_keeps_its_own_attention_after_a_call():
    model = gpt2()
    before, logits = model.config._attn_implementation, plain_logits(model, [1, 2])
    prefix_attention.PrefixAttention(model, [1, 2, 3]).rows([[4, 5]], 1)
    with pytest.raises(IndexError):  # a failing call restores it too
        prefix_attention.PrefixAttention(model, [1, 2, 3]).rows([[4, 5], [100]], 1)  # token outside the vocabulary
    assert model.config._attn_implementation == before
    torch.testing.assert_close(plain_logits(model, [1, 2]), logits, atol=0, rtol=0)
