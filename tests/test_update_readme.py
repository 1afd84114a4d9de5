"""benchmarks/update_readme.py: results pasted between markers, nested under their section."""

from __future__ import annotations

from benchmarks.update_readme import nest_headings, paste

README = """# tool

## Benchmarks

```bash
# a shell comment, not a heading
```

### Accuracy

<!-- bench:accuracy -->
old
<!-- /bench:accuracy -->

### Training

<!-- bench:training -->
old
<!-- /bench:training -->
"""

RESULT = """# Accuracy on NAB

Command: `python -m benchmarks.accuracy`

## day_ahead

| a | b |

### day_ahead: per series
"""


def test_a_result_is_pasted_under_its_section():
    text = paste(README, "accuracy", RESULT)
    block = text.split("<!-- bench:accuracy -->\n")[1].split("<!-- /bench:accuracy -->")[0]
    # the title is dropped; the rest sits below "### Accuracy"
    assert "Accuracy on NAB" not in block
    assert "\n#### day_ahead\n" in block
    assert "\n##### day_ahead: per series\n" in block
    assert "old" not in block
    # the other block is untouched
    assert "<!-- bench:training -->\nold\n<!-- /bench:training -->" in text


def test_headings_inside_earlier_pasted_blocks_do_not_set_the_level():
    text = paste(README, "accuracy", RESULT)
    text = paste(text, "training", "# Training run\n\n## Memory\n\n| x |\n")
    block = text.split("<!-- bench:training -->\n")[1]
    assert block.startswith("#### Memory\n"), block


def test_pasting_twice_gives_the_same_text():
    once = paste(README, "accuracy", RESULT)
    assert paste(once, "accuracy", RESULT) == once


def test_nest_headings_without_headings_or_below_the_top():
    assert nest_headings("plain text\n", 3) == "plain text\n"
    assert nest_headings("### deep\n#### deeper\n", 1) == "## deep\n### deeper\n"
