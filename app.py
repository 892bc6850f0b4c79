"""Asclepius Studio: `python app.py [--model ID_OR_FOLDER] [--load-in-8bit|--load-in-4bit] ...`."""

import os

# Offline by default: no analytics and no hub telemetry, set before gradio or transformers are imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

from asclepius_ui.launch import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
