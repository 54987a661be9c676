"""babblelm: sample-efficient language models under the BabyLM challenge rules."""

__version__ = "0.1.0"
