"""Every method x architecture family trains on a learnable toy task, with exact parameter counts."""
import pytest
import torch


from conftest import FAMILIES, METHODS, seq_head, toy_grid
from peftbench.config import ModelSpec, expand, identity, load_grid
from peftbench.methods.adalora import rank_budget
from peftbench.models import load_model
from peftbench.run.recipe import execute

HEADS = ("classifier", "score", "classification_head")


def _linear_shape(module):
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    w = module.weight  # transformers Conv1D (GPT-2): weight is (in, out)
    return w.shape[0], w.shape[1]


IA3 = {"bert": (("key", "value", "output.dense"), ("output.dense",)), "t5": (("k", "v", "wo"), ("wo",)),
       "gpt2": (("c_attn", "mlp.c_proj"), ("mlp.c_proj",)), "llama": (("k_proj", "v_proj", "down_proj"), ("down_proj",))}
BOTTLENECK = {"bert": (("attention.output.dense", "crossattention.output.dense"), ("0.output.dense", "1.output.dense")),
              "t5": (("SelfAttention.o", "EncDecAttention.o"), ("DenseReluDense.wo",)),
              "gpt2": (("attn.c_proj",), ("mlp.c_proj",)), "llama": (("self_attn.o_proj",), ("mlp.down_proj",))}
ATTENTION = {"bert": ("query", "value"), "t5": ("q", "v"), "gpt2": ("c_attn",), "llama": ("q_proj", "v_proj")}


# combinations that must fail with a clear one-line error instead of training
UNSUPPORTED = {("bitfit", "tiny:llama"): "has no bias terms outside the head",
               ("bitfit", "tiny:t5"): "has no bias terms outside the head",
               ("loha", "tiny:gpt2"): "cannot apply LoHaConfig to gpt2: Target module of type .*Conv1D.* not supported",
               ("lokr", "tiny:gpt2"): "cannot apply LoKrConfig to gpt2: Target module of type .*Conv1D.* not supported",
               ("oft", "tiny:gpt2"): "cannot apply OFTConfig to gpt2: Target module Conv1D.* is not supported",
               ("boft", "tiny:gpt2"): "cannot apply BOFTConfig to gpt2: Target module Conv1D.* is not supported"}
PROMPT = ["prompt_tuning", "prefix_tuning", "p_tuning"]
for _m in PROMPT:
    for _f in ("tiny:t5", "tiny:bert2bert"):
        UNSUPPORTED[_m, _f] = "cannot run classification on an encoder-decoder model"


def _factor(d: int) -> tuple[int, int]:
    """LyCORIS' split of a dimension into two factors, as square as possible (m <= n)."""
    m = max(i for i in range(1, int(d ** 0.5) + 1) if d % i == 0)
    return m, d // m


def hand_count(method, family, r=8):
    """Trainable parameters computed from the base model's shapes, independently of peft."""
    base, _, _ = load_model(ModelSpec(source=family), seq_head(2))
    head = sum(p.numel() for n, p in base.named_parameters() if n.split(".")[0] in HEADS)
    if method == "full":
        return sum(p.numel() for p in base.parameters())
    if method == "head_only":
        return head
    if method == "bitfit":
        return head + sum(p.numel() for n, p in base.named_parameters()
                          if n.endswith(".bias") and n.split(".")[0] not in HEADS)
    if method in PROMPT:
        cfg, nvt = base.config, 20
        hidden = cfg.hidden_size
        if method == "prompt_tuning":
            return head + nvt * hidden  # the virtual token embeddings
        if method == "p_tuning":
            return head + nvt * hidden + 3 * (hidden * hidden + hidden)  # embeddings + the MLP prompt encoder
        kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        return head + nvt * 2 * cfg.num_hidden_layers * kv * (hidden // cfg.num_attention_heads)  # past keys/values
    kind = "bert" if family == "tiny:bert2bert" else family[5:]
    match = lambda name, names: any(name == t or name.endswith("." + t) for t in names)  # noqa: E731
    if method in ("houlsby", "pfeiffer"):  # one adapter (down + up, with biases) after each chosen projection
        attn, ffn = BOTTLENECK[kind]
        places = [n for n, _ in base.named_modules() if n.split(".")[0] not in HEADS and
                  (match(n, ffn) or (method == "houlsby" and match(n, attn)))]
        h, m = 32, 32 // 16
        return head + len(places) * (h * m + m + m * h + h)
    targets, feedforward = IA3[kind] if method == "ia3" else (ATTENTION[kind], ())
    extra = 0
    for name, module in base.named_modules():
        if not match(name, targets) or name.split(".")[0] in HEADS:
            continue
        fin, fout = _linear_shape(module)
        if method == "lora":
            extra += r * (fin + fout)
        elif method == "dora":
            extra += r * (fin + fout) + fout  # + magnitude vector
        elif method == "adalora":
            init_r = int(round(r * 1.5))
            extra += init_r * (fin + fout) + init_r  # A, B and the singular values E
        elif method == "loha":
            extra += 2 * r * (fin + fout)  # two Hadamard-multiplied low-rank pairs
        elif method == "ia3":
            extra += fin if match(name, feedforward) else fout  # one scaling vector
        elif method == "lokr":  # W = w1 (x) w2: w1 full, w2 full when r >= half its larger side, else low rank
            (o1, o2), (i1, i2) = _factor(fout), _factor(fin)
            extra += o1 * i1 + (o2 * i2 if r >= max(o2, i2) / 2 else r * (o2 + i2))
        elif method == "vera":  # frozen shared random A, B; trained scaling vectors d (rank 256) and b (out)
            extra += 256 + fout
        elif method == "oft":  # fin / 32 orthogonal blocks, each a skew-symmetric 32 x 32 (upper triangle)
            extra += fin // 32 * (32 * 31 // 2)
        elif method == "boft":  # one butterfly factor of fin / 4 blocks of 4 x 4, and an output scale
            extra += fin // 4 * 4 * 4 + fout
    return extra + head


@pytest.mark.parametrize("family", FAMILIES + ["tiny:bert2bert"])
@pytest.mark.parametrize("method", METHODS + ["loha", "lokr", "vera", "oft", "boft", "ia3", "bitfit", "head_only",
                                              "houlsby", "pfeiffer"] + PROMPT)
def test_method_trains_and_counts_are_exact(method, family, toy, tmp_path):
    if (method, family) in UNSUPPORTED:
        run = expand(load_grid(data=toy_grid(toy, tmp_path, models=[family], methods=[method])))[0]
        with pytest.raises(ValueError, match=UNSUPPORTED[method, family]):
            execute(run, tmp_path / "run", show_progress=False)
        return
    lr = {"full": 2e-3, "head_only": 1e-1, "houlsby": 1e-2, "pfeiffer": 1e-2}.get(method, 3e-2)
    run = expand(load_grid(data=toy_grid(toy, tmp_path, models=[family], methods=[method], lr=lr, epochs=6)))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    p = result.parameters
    assert p.trainable == hand_count(method, family)
    assert p.total == p.trainable + p.non_trainable
    losses = [c["train_loss"] for c in result.curves]
    assert losses[-1] < losses[0] - 0.02, losses  # it learns
    # the task head is trainable and saved with the weights
    saved = list((tmp_path / "run" / "weights").iterdir())
    assert saved, "nothing saved"
    if method in ("houlsby", "pfeiffer"):
        assert result.method_notes["adapters"] > 0 and result.method_notes["variant"] == method
    elif method not in ("full", "bitfit", "head_only"):
        assert result.method_notes["modules_to_save"], "task head not in modules_to_save"
        assert result.method_notes["target_modules"] or method in PROMPT
        from safetensors import safe_open

        with safe_open(str(tmp_path / "run" / "weights" / "adapter_model.safetensors"), "pt") as f:
            keys = list(f.keys())
        heads = result.method_notes["modules_to_save"]
        assert any(f".{h}." in k for k in keys for h in heads), keys  # the head is saved with the adapter
    assert result.memory.peak_rss_mb > 0 and result.memory.peak_memory_mb > 0
    assert result.timing.train_seconds > 0 and result.timing.train_tokens_per_second > 0
    assert len(list(open(tmp_path / "run" / "predictions.jsonl"))) == result.test.samples


def test_adalora_budget_shrinks_and_orth_regulariser_is_in_the_loss(toy, tmp_path):
    run = expand(load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=["adalora"], epochs=5)))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    notes = result.method_notes
    n_modules = len([1 for _ in range(2 * 2)])  # 2 layers x (query, value)
    budgets = [c["rank_budget"] for c in result.curves]
    assert notes["total_step"] == result.training.optimizer_steps  # total_step from the real schedule
    assert budgets[0] < notes["init_r"] * n_modules  # pruning started
    assert budgets[-1] == notes["target_r"] * n_modules  # ... and reached the target budget
    assert budgets == sorted(budgets, reverse=True)
    # curves show the task loss; the optimized objective carries the regulariser on top
    assert all(c["train_objective"] > c["train_loss"] for c in result.curves)

    # the orthogonal regulariser is part of the training loss
    from peftbench.methods.adalora import AdaLoRA
    from peftbench.methods.base import MethodContext

    model, tok, info = load_model(ModelSpec(source="tiny:bert"), seq_head(2))
    ctx = MethodContext(info["family"], info["model_type"], ["classifier"], "SEQ_CLS", total_steps=100)
    model = AdaLoRA().apply(model, AdaLoRA.Options(**run.method.options), ctx)
    model.train()
    batch = tok(["a good day", "a bad day"], return_tensors="pt", padding=True)
    out = model(**batch, labels=torch.tensor([1, 0]))
    ce = torch.nn.functional.cross_entropy(out.logits, torch.tensor([1, 0]))
    assert out.loss.item() > ce.item() + 1e-4
    assert rank_budget(model) == 0  # peft starts the singular values E at zero; training fills the budget


def test_bf16_autocast_and_epoch_fraction(toy, tmp_path):
    """bf16 autocast runs on CPU too; epoch_fraction feeds a fresh random half of train each epoch."""
    data = toy_grid(toy, tmp_path, models=["tiny:llama"], methods=["lora"], lr=1e-2, epochs=2,
                    precision="bf16", epoch_fraction=0.5)
    run = expand(load_grid(data=data))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    n_train = result.data["rows"]["train"]
    assert result.training.samples_per_epoch == round(n_train * 0.5)
    assert result.training.samples_seen == 2 * round(n_train * 0.5)
    assert all(c["train_loss"] == c["train_loss"] for c in result.curves)  # finite, not NaN



@pytest.mark.parametrize("peft_type, extra", [("VERA", {"r": 16}), ("LOKR", {}), ("lora", {"use_rslora": True})])
def test_any_peft_method_by_config_name(peft_type, extra, toy, tmp_path):
    method = {"name": "peft", "label": peft_type.lower(), "options": {"peft_type": peft_type, **extra}}
    run = expand(load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=[method], lr=3e-2, epochs=4)))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    head = 32 * 2 + 2  # the classifier of tiny:bert
    assert result.parameters.trainable > head  # the adapter trains, and so does the head
    assert result.method_notes["peft_type"] == peft_type.upper()
    assert result.method_notes["modules_to_save"]
    losses = [c["train_loss"] for c in result.curves]
    assert losses[-1] < losses[0], losses
    if peft_type == "lora":  # rsLoRA passes through and changes nothing in the count
        assert result.parameters.trainable == hand_count("lora", "tiny:bert")


def test_any_peft_method_errors(toy, tmp_path):
    from peftbench.config import ConfigError

    with pytest.raises(ConfigError, match=r"methods\[0\].options.peft_type: required option of method 'peft' is missing"):
        load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=[{"name": "peft"}]))
    for options, expected in (({"peft_type": "NOPE"}, "needs options.peft_type, one of .* \\(got 'NOPE'\\)"),
                              ({"peft_type": "LORA", "bogus": 1}, "LoraConfig: ")):
        method = {"name": "peft", "options": options}
        run = expand(load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=[method])))[0]
        with pytest.raises(ValueError, match=expected):
            execute(run, tmp_path / "run", show_progress=False)


@pytest.mark.parametrize("method", ["lora", "dora", "adalora", "loha", "ia3"])
def test_merged_model_gives_the_same_logits(method, toy, tmp_path):
    run = expand(load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=[method], lr=3e-2, epochs=2,
                                         export_merged=True)))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    assert result.merge_check["max_abs_logit_diff"] < 1e-4
    # round trip (AdaLoRA too: saved at init_r with pruned singular values at zero, so the reload is the
    # evaluated model, not the one peft's final rank_pattern would resize): the exported plain checkpoint == the base model + the saved adapter (and trained head)
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "merged").eval()
    base, tok, _ = load_model(ModelSpec(source="tiny:bert"), seq_head(2))
    adapted = PeftModel.from_pretrained(base, tmp_path / "run" / "weights").eval()
    batch = tok(["a good meal", "an awful trip"], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, adapted(**batch).logits, atol=1e-4, rtol=1e-4)


def test_saved_adalora_adapter_reproduces_the_stored_predictions(toy, tmp_path):
    """Regression: restoring the best epoch did not restore its rank pattern, so the saved AdaLoRA adapter gave other
    predictions (up to 1.4e-3 in probability) than predictions.jsonl. Patience 1 with a falling learning rate
    makes the best epoch an early one; early stopping waits until the budget reached its target (tfinal)."""
    import json

    from peft import PeftModel


    run = expand(load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=["adalora"], lr=3e-2,
                                         epochs=8, patience=1)))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    notes = result.method_notes
    assert result.training.optimizer_steps >= notes["total_step"] - notes["tfinal"]  # budget schedule complete
    assert result.curves[-1]["rank_budget"] <= notes["target_r"] * 4
    base, tok, _ = load_model(ModelSpec(source="tiny:bert"), seq_head(2))
    adapted = PeftModel.from_pretrained(base, tmp_path / "run" / "weights").eval()
    assert_restores_stored_probabilities(adapted, tok, toy, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "weights" / "rank_budget.json").read_text())["total"] > 0


def test_adalora_seq2seq_losses_are_the_task_loss(tmp_path):
    """Regression: seq2seq train / validation losses included AdaLoRA's orthogonal regulariser."""
    from conftest import write_toy_translation

    path = write_toy_translation(tmp_path / "t.jsonl")
    data = {"models": ["tiny:t5"], "methods": ["adalora"], "train": {"lr": 5e-3, "epochs": 2, "patience": None},
            "tasks": [{"name": "mt", "type": "seq2seq", "generation": {"max_new_tokens": 8},
                       "data": {"source": str(path), "text": "en", "label": "es", "max_eval_samples": 8}}]}
    result = execute(expand(load_grid(data=data))[0], tmp_path / "run", show_progress=False)
    for c in result.curves:
        assert c["train_objective"] > c["train_loss"] + 1e-3  # the regulariser is in the objective only


@pytest.mark.parametrize("family", ["tiny:bert", "tiny:t5", "tiny:gpt2", "tiny:llama"])
def test_bottleneck_adapters_start_as_the_base_model_and_follow_the_formula(family):
    """Zero-initialised up-projections: the adapted model gives the base model's logits before training;
    an adapter computes h + W_up act(W_down h + b_down) + b_up."""
    from peftbench.methods.base import MethodContext
    from peftbench.methods.bottleneck import Houlsby
    from peftbench.methods.bottleneck_layer import BottleneckAdapter

    model, tok, info = load_model(ModelSpec(source=family), seq_head(2))
    model.eval()
    batch = tok(["a good day", "an awful long trip"], return_tensors="pt", padding=True)
    with torch.no_grad():
        before = model(**batch).logits.clone()
    heads = [n for n in HEADS if hasattr(model, n)]
    ctx = MethodContext(info["family"], info["model_type"], heads, "SEQ_CLS", total_steps=10)
    model = Houlsby().apply(model, Houlsby.Options(train_layer_norms=True), ctx)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, before)
    assert ctx.notes["norm_tensors"] > 0  # layer norms train when asked
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".adapter.up." in n for n in trainable)
    assert any("norm" in n.lower() or ".ln_" in n for n in trainable)  # GPT-2 names its norms ln_1, ln_2, ln_f

    torch.manual_seed(0)
    adapter = BottleneckAdapter(8, 2, "relu")
    torch.nn.init.normal_(adapter.up.weight)
    torch.nn.init.normal_(adapter.up.bias)
    h = torch.randn(3, 8)
    expected = h + torch.relu(h @ adapter.down.weight.T + adapter.down.bias) @ adapter.up.weight.T + adapter.up.bias
    torch.testing.assert_close(adapter(h), expected)


def test_bottleneck_errors_are_one_line(toy, tmp_path):
    """Bad options fail at validation (before any model loads), one line naming the option."""
    from peftbench.config import ConfigError

    for options, expected in (({"variant": "x"}, "methods[0].options.variant: unknown option of method 'houlsby'; "
                                                 "allowed: reduction_factor, activation"),
                              ({"bogus": 1}, "unknown option"),
                              ({"activation": "nope"}, "methods[0].options.activation: 'nope' is not one of relu")):
        with pytest.raises(ConfigError) as info:
            load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=[{"name": "houlsby", "options": options}]))
        assert expected in str(info.value) and "\n" not in str(info.value)
    run = expand(load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=["pfeiffer"],
                                         export_merged=True)))[0]
    with pytest.raises(ValueError, match="cannot be merged"):
        execute(run, tmp_path / "run2", show_progress=False)


def test_default_learning_rates_per_method_and_family(toy, tmp_path):
    """No lr in the config: each method starts from its own default for the family; an explicit lr wins."""
    from peftbench.methods.full import FullFineTuning
    from peftbench.methods.lora import LoRA
    from peftbench.methods.prompt import PromptTuning

    assert FullFineTuning.lr_for("encoder") < LoRA.lr_for("encoder") < PromptTuning.lr_for("encoder")
    data = toy_grid(toy, tmp_path, models=["tiny:gpt2"], methods=["full", "lora"], epochs=1)
    del data["train"]["lr"]
    runs = expand(load_grid(data=data))
    for run in runs:
        result = execute(run, tmp_path / run.slug, show_progress=False)
        cls = FullFineTuning if run.method.name == "full" else LoRA
        assert result.training.lr == cls.lr_for("decoder") and result.training.lr_source == "default"
    run = expand(load_grid(data=data, overrides=["methods.1.lr=0.01"]))[1]
    result = execute(run, tmp_path / "explicit", show_progress=False)
    assert result.training.lr == 0.01 and result.training.lr_source == "method"


def test_adalora_regulariser_matches_peft_and_reaches_multiple_choice():
    """Our copy of peft's orthogonal regulariser equals what peft adds to outputs.loss; multiple choice,
    whose loss is computed outside the model, gets it from the method."""
    from peftbench.methods.adalora import AdaLoRA
    from peftbench.methods.base import MethodContext

    torch.manual_seed(0)
    model, tok, info = load_model(ModelSpec(source="tiny:bert"), seq_head(2))
    ctx = MethodContext(info["family"], info["model_type"], ["classifier"], "SEQ_CLS", total_steps=100)
    method = AdaLoRA()
    model = method.apply(model, AdaLoRA.Options(), ctx)
    model.eval()
    batch = tok(["a good day", "a bad day"], return_tensors="pt", padding=True)
    labels = torch.tensor([1, 0])
    out = model(**batch, labels=labels)
    ce = torch.nn.functional.cross_entropy(out.logits, labels)
    torch.testing.assert_close(out.loss - ce, method.regulariser(model))
    # every task computes its own loss (the model never sees the targets); the adapter adds the regulariser
    from peftbench.methods.adapter import ModelAdapter
    from peftbench.tasks.base import model_inputs

    assert "labels" not in model_inputs({"input_ids": 1, "labels": 2, "_group": 3})
    torch.testing.assert_close(ModelAdapter(model, method).objective(ce), out.loss)


@pytest.mark.parametrize("family", ["tiny:t5", "tiny:bert2bert"])
@pytest.mark.parametrize("method", PROMPT)
def test_prompt_methods_train_encoder_decoders_on_seq2seq(method, family, tmp_path):
    """Encoder-decoders take prompt methods in their own formulation, seq2seq (classification heads of
    transformers' T5 take no input embeddings, see UNSUPPORTED)."""
    from conftest import write_toy_translation

    data = write_toy_translation(tmp_path / "t.jsonl", n=160)
    grid = {"models": [family], "methods": [method], "train": {"lr": 3e-2, "epochs": 2, "batch_size": 16,
                                                               "patience": None},
            "tasks": [{"name": "t", "type": "seq2seq", "generation": {"max_new_tokens": 4},
                       "data": {"source": str(data), "text": "en", "label": "es", "max_eval_samples": 4}}]}
    result = execute(expand(load_grid(data=grid))[0], tmp_path / "run", show_progress=False)
    losses = [c["train_loss"] for c in result.curves]
    assert losses[-1] < losses[0], losses
    assert result.method_notes["num_virtual_tokens"] == 20


def test_adalora_is_not_stopped_before_its_rank_budget_reaches_the_target(toy, tmp_path):
    """Regression: with patience 1 and a flat validation metric, early stopping ended AdaLoRA at epoch 2, before
    tfinal, so it was compared at a larger rank budget than its target; now it stops once the budget is final."""
    run = expand(load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=["adalora"], lr=1e-9,
                                         epochs=8, patience=1)))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    notes, training = result.method_notes, result.training
    per_epoch = training.steps_planned // 8
    first_allowed = -(-(notes["total_step"] - notes["tfinal"]) // per_epoch)  # the epoch reaching total - tfinal
    assert training.stopped_early and training.epochs_run == first_allowed < 8
    assert training.optimizer_steps >= notes["total_step"] - notes["tfinal"]
    full = expand(load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=["full"], lr=1e-9, epochs=8,
                                          patience=1)))[0]
    assert execute(full, tmp_path / "full", show_progress=False).training.epochs_run == 2  # others stop as before


def test_min_epochs_holds_off_early_stopping_and_keeps_old_run_ids(toy, tmp_path):
    """train.min_epochs: with a flat validation metric (lr 1e-9) and patience 1 a run stops after epoch 2; with
    min_epochs 4 it runs to epoch 4 (and stops there, the patience already spent); at its default (0) the field
    leaves run ids as they were before it existed."""
    def run(**train):
        spec = expand(load_grid(data=toy_grid(toy, tmp_path, models=["tiny:bert"], methods=["full"], lr=1e-9,
                                               epochs=6, patience=1, **train)))[0]
        return spec, execute(spec, tmp_path / f"run{len(train)}", show_progress=False).training

    plain, training = run()
    assert training.stopped_early and training.epochs_run == 2
    held, training = run(min_epochs=4)
    assert training.stopped_early and training.epochs_run == 4
    assert held.run_id != plain.run_id and held.train.min_epochs == 4
    assert "min_epochs" not in identity(plain.model_dump(mode="json"))["train"]


@pytest.mark.parametrize("method", ["lora", "prompt_tuning", "pfeiffer"])
def test_a_pooler_the_checkpoint_lacks_is_trained_and_saved_by_every_method(method, toy, tmp_path):
    """A BERT checkpoint saved without its pooler (as many sentence-embedding models are): the sequence head's
    pooler is created at random on load, and every method trains it, as full fine-tuning does -- the run names it,
    counts it among the trainable parameters, and the saved weights reproduce the stored predictions."""
    import json

    from transformers import BertModel

    from peftbench.tiny import bert

    config, tok = bert()
    torch.manual_seed(0)
    folder = tmp_path / "no-pooler"
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tok.save_pretrained(folder)
    run = expand(load_grid(data=toy_grid(toy, tmp_path / "out", models=[str(folder)], methods=[method], lr=3e-2,
                                         epochs=1)))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    pooler = config.hidden_size * config.hidden_size + config.hidden_size
    assert result.model_info["newly_initialised"] == {"bert.pooler.dense": pooler}
    trained = json.dumps(result.method_notes)
    assert "bert.pooler.dense" in trained  # modules_to_save / trained, as the method reports it
    assert result.parameters.trainable > pooler
    if method == "pfeiffer":
        return  # a bottleneck adapter saves its own state dict (tests above); the pooler is in it by name
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification


    torch.manual_seed(123)  # another random pooler on reload: the saved one must replace it
    base = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2).eval()
    adapted = PeftModel.from_pretrained(base, tmp_path / "run" / "weights").eval()
    assert_restores_stored_probabilities(adapted, tok.__class__.from_pretrained(folder), toy, tmp_path / "run")


@pytest.mark.parametrize("method", ["full", "lora", "prompt_tuning"])
def test_a_mean_pooling_head_averages_the_kept_tokens_and_trains_under_every_method(method, toy, tmp_path):
    """``tasks[].head: {pooling: mean}`` on a BERT checkpoint saved without its pooler: no pooler is created (none
    newly initialised, none among the parameters), the logits are the classifier applied to the mean of the last
    hidden states over the attention mask (checked by hand, padding changes nothing), and the run trains the
    classifier under every method and reproduces its stored predictions from the saved weights."""
    import json

    from transformers import BertModel

    from peftbench.families import Head, HeadKind
    from peftbench.models import load_model
    from peftbench.config import ModelSpec
    from peftbench.tiny import bert

    config, tok = bert()
    torch.manual_seed(0)
    folder = tmp_path / "no-pooler"
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tok.save_pretrained(folder)
    model, tok, info = load_model(ModelSpec(source=str(folder)), Head(HeadKind.SEQUENCE, ("a", "b"), pooling="mean"))
    assert type(model).__name__ == "MeanPooledForSequenceClassification" and "newly_initialised" not in info
    assert not any("pooler" in n for n, _ in model.named_parameters())
    model.eval()
    texts = ["a b c d e f", "a b"]
    batch = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
        states = model.model(**batch).last_hidden_state
        m = batch["attention_mask"].unsqueeze(-1).float()
        by_hand = model.classifier((states * m).sum(1) / m.sum(1))
        alone = model(**tok(texts[1:], return_tensors="pt")).logits
    torch.testing.assert_close(logits, by_hand)
    torch.testing.assert_close(logits[1:], alone, atol=1e-5, rtol=0)  # the padding of the batch changes nothing

    data = toy_grid(toy, tmp_path / "out", models=[str(folder)], methods=[method], lr=3e-2, epochs=1)
    data["tasks"][0]["head"] = {"pooling": "mean"}
    run = expand(load_grid(data=data))[0]
    result = execute(run, tmp_path / "run", show_progress=False)
    assert result.model_info["model_class"] == "MeanPooledForSequenceClassification"
    assert "newly_initialised" not in result.model_info
    if method == "full":
        return
    assert "classifier" in json.dumps(result.method_notes)
    from peft import PeftModel

    from peftbench.heads import MeanPooledForSequenceClassification

    torch.manual_seed(123)  # another random classifier on reload: the saved one must replace it
    cfg = type(config).from_pretrained(folder, num_labels=2)
    base = MeanPooledForSequenceClassification.from_pretrained(folder, config=cfg).eval()
    adapted = PeftModel.from_pretrained(base, tmp_path / "run" / "weights").eval()
    assert_restores_stored_probabilities(adapted, tok, toy, tmp_path / "run")


def test_mean_pooling_is_refused_where_it_reads_nothing():
    from peftbench.config import ConfigError

    with pytest.raises(ConfigError, match=r"tasks\[0\]\.head\.pooling: mean pooling reads one vector per input"):
        load_grid(data={"models": ["tiny:bert"], "methods": ["lora"],
                        "tasks": [{"name": "t", "type": "token_classification", "data": {"source": "x.jsonl"},
                                   "head": {"pooling": "mean"}}]})
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.head\.pooling.*'cls' or 'mean'|tasks\[0\]\.head\.pooling"):
        load_grid(data={"models": ["tiny:bert"], "methods": ["lora"],
                        "tasks": [{"name": "t", "data": {"source": "x.jsonl"}, "head": {"pooling": "max"}}]})
    from peftbench.families import ENCODER_DECODER, Head, HeadKind
    from peftbench.models import head_class

    with pytest.raises(ValueError, match="head.pooling mean needs a sequence-level task on an encoder or a decoder"):
        head_class(ENCODER_DECODER, Head(HeadKind.SEQUENCE, pooling="mean"), "task 't'")  # T5: both halves read


def assert_restores_stored_probabilities(adapted, tok, toy, run_dir):
    """The reloaded model's test probabilities are the ones the run stored (its saved weights are what it scored)."""
    import json

    from peftbench.config import DataSpec
    from peftbench.data.loading import load_raw

    texts = list(load_raw(DataSpec(source=str(toy)))[0]["test"]["text"])
    stored = [json.loads(x)["probs"] for x in (run_dir / "predictions.jsonl").read_text().splitlines()]
    with torch.no_grad():
        probs = torch.softmax(adapted(**tok(texts, return_tensors="pt", padding=True)).logits, -1)
    torch.testing.assert_close(probs, torch.tensor(stored), atol=2e-5, rtol=0)
