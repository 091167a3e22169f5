"""Haven's training package: prepare the project's own dataset, fine-tune with LoRA/QLoRA, evaluate, export.

Each step is one command (`training.cli`): prepare → train → eval → export. Examples are rendered with
`core.prompts`, the module the engines serve with, so the model is served exactly as it was trained.
"""
