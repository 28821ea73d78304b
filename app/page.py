"""What every tab of one page shares: the studio, the config form, the labels that follow the language, the language."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.form import ConfigForm
from app.i18n import Labels
from studio.api import Studio


@dataclass
class Page:
    studio: Studio
    form: ConfigForm
    labels: Labels
    lang: gr.State  # a language code of studio.locales.LANGUAGES ("en", "zh"), per browser
