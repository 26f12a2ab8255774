"""Other weight adapters from peft, each by name with its own options: LoHa and LoKr (Hadamard / Kronecker
products of low-rank factors), VeRA (shared random projections, trained scaling vectors), OFT and BOFT
(orthogonal fine-tuning, block-diagonal / butterfly), IA3 (learned rescaling vectors). Target modules
default to peft's per-model-type choice for each method, else all linear layers (OFT and BOFT adapt
``nn.Linear`` only: GPT-2's Conv1D layers are refused by peft with a one-line error)."""
from __future__ import annotations

from typing import Optional

from pydantic import Field

from .base import lrs
from .peft_method import LowRankOptions, PeftMethod, PeftOptions, peft_kwargs

LOW_RANK = {"lora_alpha": "alpha", "lora_dropout": "module_dropout"}  # LyCORIS names


class LoHaOptions(LowRankOptions):
    rank_dropout: float = Field(0.0, ge=0, lt=1)


class LoHa(PeftMethod):
    name, Options = "loha", LoHaOptions
    config_cls, peft_family = "LoHaConfig", "LOHA"
    default_lr, renames = lrs(1e-3, 1e-3, 5e-4), LOW_RANK


class LoKrOptions(LoHaOptions):
    decompose_both: bool = False  # also factor the left Kronecker factor into low rank
    decompose_factor: int = -1  # -1: as square as possible


class LoKr(LoHa):
    name, Options = "lokr", LoKrOptions
    config_cls, peft_family = "LoKrConfig", "LOKR"


class VeRAOptions(PeftOptions):
    r: int = Field(256, ge=1)  # rank of the shared random projections
    vera_dropout: float = Field(0.0, ge=0, lt=1)
    d_initial: float = 0.1  # initial value of the trained scaling vector d
    projection_prng_key: int = 0


class VeRA(PeftMethod):
    name, Options = "vera", VeRAOptions
    config_cls, peft_family = "VeraConfig", "VERA"
    default_lr = lrs(4e-3, 4e-3, 1e-3)


class OFTOptions(PeftOptions):
    oft_block_size: int = Field(32, ge=1)  # size of the orthogonal blocks
    module_dropout: float = Field(0.0, ge=0, lt=1)
    coft: bool = False  # constrained OFT
    block_share: bool = False


class OFT(PeftMethod):
    name, Options = "oft", OFTOptions
    config_cls, peft_family = "OFTConfig", "OFT"
    default_lr = lrs(1e-3, 1e-3, 5e-4)
    fixed = {"r": 0}  # the block size sets the number of blocks


class BOFTOptions(PeftOptions):
    boft_block_size: int = Field(4, ge=1)
    boft_block_num: int = Field(0, ge=0)  # 0: derived from the block size
    boft_n_butterfly_factor: int = Field(1, ge=1)
    boft_dropout: float = Field(0.0, ge=0, lt=1)


class BOFT(PeftMethod):
    name, Options = "boft", BOFTOptions
    config_cls, peft_family = "BOFTConfig", "BOFT"
    default_lr = lrs(1e-3, 1e-3, 5e-4)


class IA3Options(PeftOptions):
    feedforward_modules: Optional[list[str]] = None  # None: peft's default among the target modules


class IA3(PeftMethod):
    name, Options = "ia3", IA3Options
    config_cls = "IA3Config"
    default_lr = lrs(3e-3)

    def config_kwargs(self, o, ctx, model):
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING

        kw = peft_kwargs(o, ctx, "IA3")
        ff = o.feedforward_modules
        if ff is None:
            default_ff = TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(ctx.model_type, [])
            ff = [m for m in default_ff if kw["target_modules"] != "all-linear" and m in kw["target_modules"]]
        ctx.notes["feedforward_modules"] = sorted(ff)
        return dict(feedforward_modules=ff, **kw)
