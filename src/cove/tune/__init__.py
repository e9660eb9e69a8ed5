"""Fine-tuning: the user's chats and documents become a LoRA adapter the engine applies to the base.

Only `data`, `plan` and `adapter_gguf` import without the `tune` extra; `train` needs torch,
transformers and peft, and `require_extra` says exactly what to install when they are missing.
"""
