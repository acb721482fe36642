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
@pytest.mark.parametrize("out_in", [False, True], ids=["own-layout", "out-in-weights"])
@pytest.mark.parametrize("group_cost", [None, 0], ids=["one-group", "a-group-per-row"])
def test_prefill_and_decoding_equal_the_plain_forward(make, prefix_len, out_in, group_cost, monkeypatch):
    model = make()
    assert prefix_attention.supported(model)
    if group_cost is not None:  # decoding's rows in groups of their own (the tiny model's default: one group)
        monkeypatch.setattr(prefix_attention, "GROUP_COST_BYTES", group_cost)
    # out_in: GPT-2's weights stored [out, in]; up to 4 rows (decoding) as W·xᵀ, more (the prefill) the own forward
    monkeypatch.setattr(prefix_attention, "SMALL_ROWS", 4)
    monkeypatch.setattr(prefix_attention, "OUTPUT_BLOCK", 10)  # the output layer's 97 rows in 10 blocks
    if out_in:
        prefix_attention.out_in_weights(model)
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(0, 97, (prefix_len,), generator=g).tolist()
    rows = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (5, 12, 1, 8)]
    fed = [torch.randint(0, 97, (3,), generator=g).tolist() for _ in rows]  # tokens fed at the steps
    with torch.inference_mode():
        # packed as [5], [12, 1], [8]
        batch = prefix_attention.PrefixAttention(model, prefix).rows(rows, 3, prefill_tokens=14)
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


def test_out_in_weights_keep_the_values_and_the_modules_own_forward():
    model = gpt2()
    attn = model.transformer.h[0].attn.c_attn  # Conv1D: weight [in, out]
    before = attn.weight.detach().clone()
    x = torch.randn(3, 32)
    with torch.no_grad():
        own = attn(x)
        prefix_attention.out_in_weights(model)
        assert attn.weight.t().is_contiguous() and torch.equal(attn.weight, before)
        torch.testing.assert_close(attn(x), own, atol=1e-6, rtol=1e-5)  # x·Wᵀ: the same sums, maybe another order
        torch.testing.assert_close(prefix_attention._few_rows_linear(attn, None, x), own, atol=1e-6, rtol=1e-5)


def test_rows_are_grouped_to_skip_padding_at_a_price_per_group():
    starts = [0, 0, 5, 5, 100]
    assert prefix_attention._groups(starts, 1) == [(0, 2, 0, False), (2, 4, 5, False), (4, 5, 100, False)]
    assert prefix_attention._groups(starts, 11) == [(0, 4, 0, True), (4, 5, 100, False)]  # 10 padded columns < 11
    assert prefix_attention._groups(starts, 1000) == [(0, 5, 0, True)]
    assert prefix_attention._groups([3, 1], 1) == [(0, 1, 3, False), (1, 2, 1, False)]  # any order, consecutive rows


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


def test_the_tanh_gelu_matches_the_fused_kernel():
    import torch.nn.functional as F

    x = torch.cat([torch.randn(10_000) * 4, torch.tensor([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 1e20, -1e20])])
    got = prefix_attention._gelu_tanh(x)
    torch.testing.assert_close(got, F.gelu(x, approximate="tanh"), atol=1e-6, rtol=1e-6)
    assert torch.isfinite(got).all()
