"""GGUF export checked in llama.cpp itself (real llama-cpp-python): the file's greedy answers against the merged
model's, prompt by prompt; and, without the package, what installing it would add."""

import sys

import pytest

from studio.config import RunConfig
from studio.export.gguf_export import export_gguf
from studio.export.gguf_llama import ANSWER_TOKENS
from studio.export.merge import ExportError
from studio.locales import LANGUAGES, in_language
from studio.modeling.llama_cpp import PIP_COMMAND


def _config(model, out, gguf_type):
    return RunConfig().with_overrides(
        {
            "model.name_or_path": str(model),
            "export.output_dir": str(out),
            "export.format": "gguf",
            "export.gguf_type": gguf_type,
        }
    )


def test_f16_answers_in_llama_cpp_exactly_as_the_merged_model(tiny_model_dir, strong_adapter, tmp_path):
    pytest.importorskip("llama_cpp")
    report = export_gguf(_config(tiny_model_dir, tmp_path / "f16", "f16"), str(strong_adapter))
    check = report.llama_cpp
    assert report.passed and check is not None and not check.error and check.tokenizer_matches
    assert len(check.answers) == 3 and check.equal  # the default export.check_prompts, token for token
    for answer in check.answers:
        assert answer.merged == answer.llama_cpp and 0 < len(answer.merged) <= ANSWER_TOKENS
    assert len({tuple(a.merged) for a in check.answers}) == 3  # three prompts, three different answers
    head, tokenizer, *prompts = (str(line) for line in report.llama_cpp_lines)
    assert "answers to all 3 prompts equal to the merged model's" in head and "✓" in tokenizer
    assert len(prompts) == 3 and all(": equal [" in line for line in prompts)
    assert "equal to the merged model's" in (tmp_path / "f16" / "README.md").read_text()  # the card says it too


def test_q8_0_states_its_agreement_prompt_by_prompt(tiny_model_dir, strong_adapter, tmp_path):
    pytest.importorskip("llama_cpp")
    report = export_gguf(_config(tiny_model_dir, tmp_path / "q8", "q8_0"), str(strong_adapter))
    check = report.llama_cpp
    assert report.passed and check is not None and not check.error
    same, total = check.agreement
    assert 0 < same <= total and total >= 3  # the first tokens at least agree; how many is what the report says
    head, _, *prompts = report.llama_cpp_lines
    assert f"for {same} of {total} tokens" in head and "q8_0 rounding" in head
    for line, answer in zip(prompts, check.answers):
        assert (": equal [" in line) == answer.equal
        assert answer.equal or f"{answer.same} of " in line  # where it first differs, with both sides' ids
    assert all(line.text(lang) for lang in LANGUAGES for line in report.llama_cpp_lines)


def test_without_llama_cpp_python_the_export_says_what_installing_it_adds(
    tiny_model_dir, strong_adapter, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` fails as when it is not installed
    report = export_gguf(_config(tiny_model_dir, tmp_path / "plain", "q8_0"), str(strong_adapter))
    assert report.passed and report.llama_cpp is None
    (line,) = report.llama_cpp_lines
    assert "llama-cpp-python is not installed" in line and PIP_COMMAND in line and "scripts/setup.sh gguf-check" in line
    assert all(PIP_COMMAND in in_language(line, lang) for lang in LANGUAGES)
    assert "llama.cpp" not in (tmp_path / "plain" / "README.md").read_text().split("## Use")[0]


def test_a_file_llama_cpp_cannot_load_fails_the_export(tiny_model_dir, strong_adapter, tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    import studio.export.gguf_vocab as vocab

    # the name this writer once gave GPT-2's split: transformers' reader ignores it, llama.cpp refuses the file
    monkeypatch.setattr(vocab, "pre_tokenizer_name", lambda spec: "gpt2")
    with pytest.raises(ExportError, match="failed its reload check: llama.cpp could not load"):
        export_gguf(_config(tiny_model_dir, tmp_path / "wrong", "f16"), str(strong_adapter))
    assert "llama-cpp-python" in (tmp_path / "wrong" / "EXPORT_FAILED_CHECK.txt").read_text()
