"""Intruder dimensions against their definition on constructed matrices, and both analyses through a run and
the report (tiny models: the figures' numbers, not their size, are what is checked)."""
import json

import pytest
import torch

from conftest import toy_grid
from peftbench.analysis.intruders import intruder_count, intruder_dimensions
from peftbench.config import load_grid
from peftbench.report import render
from peftbench.runner import run_grid
from peftbench.store import Store


def test_intruder_dimensions_follow_the_definition():
    n = 16
    w0 = torch.diag(torch.linspace(2.0, 1.0, n))  # singular vectors: the standard basis
    spread = torch.ones(n) / n ** 0.5  # cosine 1/4 with every basis vector
    w = w0 + 10 * torch.outer(spread, spread)
    count, closest = intruder_count(w0, w, top_k=3, threshold=0.5)
    assert count == 1 and closest == pytest.approx(0.25, abs=0.02)  # the new top direction is an intruder
    assert intruder_count(w0, w0 + 1e-3 * torch.randn(n, n, generator=torch.Generator().manual_seed(0)), 3)[0] == 0
    res = intruder_dimensions({"a": w0, "b": w0}, {"a": w, "b": w0.clone()}, top_k=3)
    assert res["per_matrix"] == {"a": 1, "b": 0} and res["total"] == 1 and res["changed_matrices"] == 1


@pytest.mark.parametrize("family", ["tiny:bert", "tiny:gpt2"])
def test_intruders_and_forgetting_through_a_run_and_the_report(family, toy, tmp_path):
    texts = tmp_path / "held_out.txt"
    texts.write_text("\n".join(f"a held out sentence number {i} about the weather" for i in range(20)), encoding="utf-8")
    data = toy_grid(toy, tmp_path / "out", models=[family], methods=["full", "lora", "prompt_tuning"], epochs=2)
    data["train"]["analysis"] = {"intruders": True, "top_k": 4, "forgetting_text": str(texts), "forgetting_samples": 10}
    assert run_grid(load_grid(data=data), in_process=True, show_progress=False).failed == []
    store = Store(tmp_path / "out")
    results = {r.method: r for r in store.results()}
    store.close()
    full, lora, prompt = (results[m].analysis for m in ("full", "lora", "prompt_tuning"))
    assert full["intruders"]["changed_matrices"] == full["intruders"]["matrices"] > 4  # full changes every matrix
    n_attention = 4 if family == "tiny:bert" else 2  # LoRA's targets: query, value (BERT) / c_attn (GPT-2) x 2 layers
    assert lora["intruders"]["changed_matrices"] == n_attention
    assert prompt["intruders"]["changed_matrices"] == 0 and prompt["intruders"]["total"] == 0  # no weight changes
    for a in (full, lora):
        f = a["forgetting"]
        assert f["texts"] == 10 and f["lm_loss_before"] > 0 and f["tensors_changed"] > 0
        assert f["objective"] == ("BertForMaskedLM" if family == "tiny:bert" else "GPT2LMHeadModel")
    # the base weights did not change, but the virtual tokens are in front of every text: measured with them active
    f = prompt["forgetting"]
    assert f["tensors_changed"] == 0 and f["adapter_active"] and not full["forgetting"]["adapter_active"]
    assert f["lm_loss_after"] > 0 and f["increase"] != pytest.approx(0, abs=1e-6)
    md, _ = render(tmp_path / "out", echo=lambda *a: None, resamples=50)
    text = md.read_text()
    assert "Analyses: intruder dimensions and forgetting" in text
    assert (tmp_path / "out" / "report" / f"analysis__{family[5:]}__toy.png").stat().st_size > 1000
    assert json.loads(json.dumps(full))  # stored as plain JSON


def test_forgetting_is_skipped_where_the_checkpoint_has_no_trained_lm_head(tmp_path):
    """A BERT checkpoint saved without its MLM head (an embedding model, like me5-small) gets no random head."""
    from transformers import BertModel

    from peftbench.analysis.forgetting import language_model
    from peftbench.tiny import bert

    config, tok = bert()
    BertModel(config).save_pretrained(tmp_path / "ckpt")
    model, why = language_model(str(tmp_path / "ckpt"), config, {"source_kind": "local"})
    assert model is None and "no trained LM head" in why and "cls.predictions" in why


def test_prompted_forgetting_equals_prepending_the_virtual_tokens_by_hand():
    """Prompt tuning on a tiny GPT-2: the LM loss through peft with the trained virtual tokens active equals the
    loss computed by hand, the prompt embeddings put in front of each text and only the text's tokens scored."""
    from peft import PromptTuningConfig, get_peft_model
    from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel

    from peftbench.analysis.forgetting import lm_loss, prompted
    from peftbench.tiny import gpt2

    config, tok = gpt2()
    tok.pad_token = "[PAD]"
    config.pad_token_id = tok.pad_token_id
    torch.manual_seed(0)
    task = get_peft_model(GPT2ForSequenceClassification(config), PromptTuningConfig(task_type="SEQ_CLS",
                                                                                    num_virtual_tokens=4))
    with torch.no_grad():
        task.prompt_encoder["default"].embedding.weight.normal_(0, 1.0)  # "trained" virtual tokens
    lm = GPT2LMHeadModel(config).eval()
    lm.transformer.load_state_dict(task.get_base_model().transformer.state_dict())
    texts = ["a held out sentence", "another one, longer than the first one"]
    base = lm_loss(lm, tok, texts, 64, "cpu")  # byte-level: 64 tokens hold each text whole
    prompt = task.prompt_encoder["default"].embedding.weight.detach()
    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tok(text, return_tensors="pt")["input_ids"]
            embeds = torch.cat([prompt[None], lm.transformer.wte(ids)], dim=1)
            logits = lm(inputs_embeds=embeds).logits[:, prompt.shape[0]:]
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum")
            total, count = total + float(loss), count + ids.shape[1] - 1
    after = lm_loss(prompted(lm, task), tok, texts, 64, "cpu")
    assert after == pytest.approx(total / count, rel=1e-5) and after != pytest.approx(base, rel=1e-3)
