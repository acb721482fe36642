"""LLM backends with tiny random models: the stop rule, log-probs against the logits, batching and the prefix cache."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from harness.errors import HarnessError
from harness.models.llm import Decoding, Stops, TransformersLM, VllmLM, get_backend


def tiny(tmp_path_factory, model_id):
    from harness.models.tiny import materialize

    return materialize(model_id, tmp_path_factory.getbasetemp() / "shared-models")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return TransformersLM.load(tiny(tmp_path_factory, "tiny:gpt2"), batch_size=4)


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return TransformersLM.load(tiny(tmp_path_factory, "tiny:t5"), batch_size=3)


def prompts_for(lm, n=5):
    """Prompts of different lengths sharing a few-shot prefix that ends with a newline."""
    prefix = "Example 1:\nDocument: caffeine during pregnancy\nRelevant Query: is caffeine ok?\n\nExample 2:\n"
    docs = ["bees pollinate flowers", "volcano lava eruption and ash over the crater " * 3, "tides",
            "the moon moves the ocean " * 5, "copper wire conducts electricity", "insulin glucose"][:n]
    texts = [f"{prefix}Document: {d}\nRelevant Query:" for d in docs]
    return lm.encode(prefix), [lm.encode(t) for t in texts]


def test_newline_tokens_are_found_by_their_text(gpt2):
    nl = gpt2.tokenizer.convert_tokens_to_ids("Ċ")
    assert nl in gpt2.stops.newline_ids
    assert all("\n" in gpt2.tokenizer.decode([i]) for i in gpt2.stops.newline_ids)
    assert gpt2.tokenizer.eos_token_id in gpt2.stops.eos_ids


def test_finish_cuts_at_the_first_newline_and_keeps_query_log_probs(gpt2):
    tok = gpt2.tokenizer
    query = tok(" What is a bee?", add_special_tokens=False)["input_ids"]
    nl = tok.convert_tokens_to_ids("Ċ")
    more = tok(" Example", add_special_tokens=False)["input_ids"]
    ids = query + [nl] + more
    lps = [-float(i + 1) for i in range(len(ids))]
    gen = gpt2.stops.finish(tok, ids, lps)
    assert gen.query == "What is a bee?" and gen.stopped == "newline"
    assert gen.log_probs == lps[: len(query)] and gen.token_ids == query
    eos = gpt2.stops.finish(tok, query + [tok.eos_token_id], lps[: len(query) + 1])
    assert (eos.query, eos.stopped, len(eos.log_probs)) == ("What is a bee?", "eos", len(query))
    length = gpt2.stops.finish(tok, query, lps[: len(query)])
    assert (length.stopped, length.log_probs) == ("length", lps[: len(query)])


def test_a_merged_token_holding_text_before_its_newline_stays_in_the_query():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"a": 0, "b": 1, "?": 2, "\n": 3, "?\n": 4, "<eos>": 5}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    raw.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    raw.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>")
    stops = Stops.for_tokenizer(tok)
    assert stops.newline_ids == {3, 4} and stops.newline_heads == {4: "?"}
    gen = stops.finish(tok, [0, 1, 4, 0], [-1.0, -2.0, -3.0, -4.0])
    assert (gen.query, gen.log_probs) == ("ab?", [-1.0, -2.0, -3.0])


def test_log_probs_equal_a_hand_computation_from_the_logits(gpt2):
    _, prompts = prompts_for(gpt2, 2)
    for prompt, gen in zip(prompts, gpt2.generate(prompts, Decoding(max_new_tokens=5)), strict=True):
        generated = gpt2.stops.finish(gpt2.tokenizer, gen.token_ids, gen.log_probs)  # idempotent
        assert generated.token_ids == gen.token_ids
        with torch.no_grad():
            logits = gpt2.model(torch.tensor([prompt + gen.token_ids])).logits[0]
        steps = torch.log_softmax(logits[len(prompt) - 1 : len(prompt) - 1 + len(gen.token_ids)], dim=-1)
        assert gen.token_ids == steps.argmax(-1).tolist()  # greedy
        hand = [float(steps[j, t]) for j, t in enumerate(gen.token_ids)]
        assert gen.log_probs == pytest.approx(hand, abs=1e-4)


def stopping_at_different_steps(lm, prompts, steps):
    """`lm`'s stop rule with one more 'newline': a token the greedy outputs first reach at different steps."""
    plain = [g.token_ids for g in lm.generate(prompts, Decoding(max_new_tokens=steps))]
    for token in sorted({t for ids in plain for t in ids}):
        firsts = {ids.index(token) if token in ids else None for ids in plain}
        if len(firsts) > 1 and 0 not in firsts:
            return Stops(lm.stops.newline_ids | {token}, lm.stops.eos_ids, lm.stops.newline_heads)
    pytest.skip("the tiny model's greedy outputs share no token reached at different steps")


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_batched_generation_equals_one_at_a_time_with_plain_generate(gpt2, prefix_cache):
    prefix, prompts = prompts_for(gpt2)
    batched = TransformersLM(gpt2.model, gpt2.tokenizer, batch_size=4, prefix_cache=prefix_cache)
    batched.stops = stopping_at_different_steps(gpt2, prompts, 7)
    stop_ids = sorted(batched.stops.all_ids)
    many = batched.generate(prompts, Decoding(max_new_tokens=7), prefix=prefix)
    assert {g.stopped for g in many} == {"newline", "length"}  # rows leave the batch at different steps
    for prompt, gen in zip(prompts, many, strict=True):
        ref = gpt2.model.generate(torch.tensor([prompt]), max_new_tokens=7, do_sample=False, eos_token_id=stop_ids,
                                  pad_token_id=gpt2.pad_id, output_logits=True, return_dict_in_generate=True)
        ids = ref.sequences[0, len(prompt):].tolist()
        one = batched.stops.finish(gpt2.tokenizer, ids, [
            float(torch.log_softmax(step[0], -1)[t]) for step, t in zip(ref.logits, ids, strict=True)])
        assert (gen.token_ids, gen.query, gen.stopped) == (one.token_ids, one.query, one.stopped)
        assert gen.log_probs == pytest.approx(one.log_probs, abs=1e-4)


def test_prefix_cache_is_not_used_when_tokenisation_differs(gpt2):
    prefix, prompts = prompts_for(gpt2, 2)
    bad_prefix = prefix[:-1] + [prefix[-1] + 1]  # no prompt starts with it: every prompt runs in full
    a = gpt2.generate(prompts, Decoding(max_new_tokens=3), prefix=bad_prefix)
    b = gpt2.generate(prompts, Decoding(max_new_tokens=3))
    assert [g.token_ids for g in a] == [g.token_ids for g in b]


def test_the_prefix_cache_is_computed_once_and_left_unchanged(gpt2):
    prefix, prompts = prompts_for(gpt2, 3)
    first = gpt2.generate(prompts, Decoding(max_new_tokens=3), prefix=prefix)
    kept = gpt2._prefix[1]
    assert kept.get_seq_length() == len(prefix) and kept.layers[0].keys.shape[0] == 1
    again = gpt2.generate(prompts, Decoding(max_new_tokens=3), prefix=prefix)
    assert gpt2._prefix[1] is kept and kept.get_seq_length() == len(prefix)  # batches extend copies only
    assert [g.token_ids for g in again] == [g.token_ids for g in first]


def test_greedy_equals_transformers_generate(gpt2):
    _, prompts = prompts_for(gpt2, 2)
    ours = gpt2.generate(prompts, Decoding(max_new_tokens=6))
    for prompt, gen in zip(prompts, ours, strict=True):
        ref = gpt2.model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                                  pad_token_id=gpt2.pad_id)[0, len(prompt):].tolist()
        assert ref[: len(gen.token_ids)] == gen.token_ids


def test_sampling_is_reproducible_per_seed_and_independent_of_batching(gpt2):
    prefix, prompts = prompts_for(gpt2, 3)
    decoding = Decoding(max_new_tokens=5, do_sample=True, temperature=1.0, top_p=0.9)
    a = gpt2.generate(prompts, decoding, seeds=[1, 2, 3], prefix=prefix)
    b = [TransformersLM(gpt2.model, gpt2.tokenizer, batch_size=1).generate([p], decoding, seeds=[s])[0]
         for p, s in zip(prompts, [1, 2, 3], strict=True)]
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    c = gpt2.generate(prompts, decoding, seeds=[4, 5, 6])
    assert [g.token_ids for g in a] != [g.token_ids for g in c]


def test_seq2seq_batched_equals_one_at_a_time_and_stops_at_eos(t5):
    texts = ["Query: bees Document: bees pollinate flowers", "tides", "the moon moves the ocean " * 4]
    prompts = [t5.encode(t) for t in texts]
    decoding = Decoding(max_new_tokens=6)
    many = t5.generate(prompts, decoding)
    single = TransformersLM(t5.model, t5.tokenizer, batch_size=1)
    for prompt, gen in zip(prompts, many, strict=True):
        one = single.generate([prompt], decoding)[0]
        assert gen.token_ids == one.token_ids and gen.log_probs == pytest.approx(one.log_probs, abs=1e-4)
        ref = t5.model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False)[0, 1:].tolist()
        assert ref[: len(gen.token_ids)] == gen.token_ids
    assert t5.stops.eos_ids == {t5.tokenizer.eos_token_id} and not t5.supports_prefix_cache


def test_get_backend_names_the_choices():
    assert get_backend("transformers") is TransformersLM and get_backend("vllm") is VllmLM
    with pytest.raises(HarnessError, match="vllm"):
        get_backend("vlm")


def test_vllm_backend_refuses_cpu_and_missing_install(tmp_path, monkeypatch):
    with pytest.raises(HarnessError, match="CUDA"):
        VllmLM.load(tmp_path, device="cpu")
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(HarnessError, match="pip install"):
        VllmLM(tmp_path)


def test_vllm_backend_sends_token_ids_and_reads_the_chosen_log_probs(gpt2, tmp_path, monkeypatch):
    """A stand-in vLLM module: checks the arguments the backend sends and the rows it makes of the answer."""
    tok = gpt2.tokenizer
    nl = tok.convert_tokens_to_ids("Ċ")
    answer = tok(" bees?", add_special_tokens=False)["input_ids"] + [nl]
    seen = {}

    class Logprob:
        def __init__(self, value):
            self.logprob = value

    class FakeLLM:
        def __init__(self, **kwargs):
            seen["engine"] = kwargs

        def generate(self, inputs, params, use_tqdm=False):
            seen["inputs"], seen["params"] = inputs, params
            completion = types.SimpleNamespace(token_ids=answer,
                                               logprobs=[{t: Logprob(-0.5 * (i + 1))} for i, t in enumerate(answer)])
            return [types.SimpleNamespace(outputs=[completion]) for _ in inputs]

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = FakeLLM, lambda **kw: kw
    fake.inputs = types.SimpleNamespace(TokensPrompt=lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids})
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr("harness.models.loading.load_tokenizer", lambda path, padding_side="right": tok)
    lm = VllmLM.load(tmp_path, device="cuda:0", dtype="bfloat16")
    assert seen["engine"]["enable_prefix_caching"] is True and seen["engine"]["trust_remote_code"] is False
    gens = lm.generate([[1, 2, 3]], Decoding(max_new_tokens=9))
    assert seen["inputs"] == [{"prompt_token_ids": [1, 2, 3]}]
    params = seen["params"][0]
    assert params["temperature"] == 0.0 and params["max_tokens"] == 9 and params["logprobs"] == 0
    assert nl in params["stop_token_ids"]
    assert gens[0].query == "bees?" and gens[0].log_probs == [-0.5 * (i + 1) for i in range(len(answer) - 1)]
