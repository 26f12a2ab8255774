"""peftbench: benchmark fine-tuning methods (full, LoRA, DoRA, AdaLoRA, ...) on quality and cost."""
__version__ = "0.1.0"
