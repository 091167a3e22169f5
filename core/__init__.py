"""Haven's platform-free core: settings, dialog manager, safety, context store, model engines, prompts."""
