"""Names of any script in kdviz's figures: a font fallback list, short labels, a warning for glyphs
no installed font has.

matplotlib draws each character with the first font of `font.family` that has it (fallback since
matplotlib 3.6). `use_fallback_fonts` (run by kdviz.plots for each figure it makes) appends the Noto fonts of
Debian's fonts-noto-core and fonts-noto-cjk packages (CJK, Devanagari and other Indic scripts,
Arabic, Hebrew, Thai, ...) that are installed after the user's own families. matplotlib's font
list is cached when it is first built, so fonts installed later are added from the system's font
folders by file name.

matplotlib lays text out left to right without shaping: `short_label` puts right-to-left runs (Arabic,
Hebrew) in display order, so they read right; Arabic letters are drawn in their isolated forms.
"""

from __future__ import annotations

import functools
import unicodedata
import warnings

import matplotlib
from matplotlib import font_manager

# family -> the file that holds it in Debian's fonts-noto-core / fonts-noto-cjk
FALLBACK_FONTS = {
    "Noto Sans CJK JP": "NotoSansCJK-Regular.ttc",
    "Noto Sans Devanagari": "NotoSansDevanagari-Regular.ttf",
    "Noto Sans Arabic": "NotoSansArabic-Regular.ttf",
    "Noto Sans Hebrew": "NotoSansHebrew-Regular.ttf",
    "Noto Sans Bengali": "NotoSansBengali-Regular.ttf",
    "Noto Sans Tamil": "NotoSansTamil-Regular.ttf",
    "Noto Sans Thai": "NotoSansThai-Regular.ttf",
    "Noto Sans": "NotoSans-Regular.ttf",  # Latin, Greek and Cyrillic beyond DejaVu's
}
LABEL_WIDTH = 24  # characters of a name drawn in a figure; pickers and tables keep the whole name
_RTL = {"R", "AL"}  # Unicode bidirectional classes of right-to-left letters
_warned: set[str] = set()
_searched: list[bool] = []


def use_fallback_fonts() -> list[str]:
    """Append the installed FALLBACK_FONTS to matplotlib's font.family (after the user's choice,
    which still draws every character it has); return the families appended."""
    known = {f.name for f in font_manager.fontManager.ttflist}
    missing = {file: family for family, file in FALLBACK_FONTS.items() if family not in known}
    if missing and not _searched:  # installed after matplotlib cached its font list: add them by file name
        _searched.append(True)  # once per process: the system's font folders do not change under it
        for path in font_manager.findSystemFonts():
            if path.rsplit("/", 1)[-1] in missing:
                font_manager.fontManager.addfont(path)
        known = {f.name for f in font_manager.fontManager.ttflist}
    family = list(matplotlib.rcParams["font.family"])
    added = [name for name in FALLBACK_FONTS if name in known and name not in family]
    matplotlib.rcParams["font.family"] = family + added
    return added


def short_label(name, width: int = LABEL_WIDTH) -> str:
    """`name` as drawn in a figure: at most `width` characters (the middle cut out, so that names
    differing at either end stay apart), right-to-left runs in display order, `$` drawn as itself
    rather than starting mathtext."""
    text = str(name)
    if len(text) > width:
        head = (width - 1) * 2 // 3
        text = text[:head] + "…" + text[len(text) - (width - 1 - head) :]
    return _display_order(text).replace("$", r"\$")


def _display_order(text: str) -> str:
    """A small form of the Unicode bidi algorithm: each run of right-to-left letters (with the
    spaces and marks inside it) reversed, and the runs' order reversed too when the first strong
    letter is right-to-left."""
    kinds = [unicodedata.bidirectional(ch) for ch in text]
    if not _RTL & set(kinds):
        return text
    runs, current, rtl = [], "", None
    for ch, kind in zip(text, kinds):
        strong = True if kind in _RTL else False if kind == "L" or kind in ("EN", "AN") else None
        if strong is not None and strong != rtl and current:
            runs.append((rtl, current))
            current = ""
        rtl = rtl if strong is None else strong
        current += ch
    runs.append((rtl, current))
    drawn = [part[::-1] if is_rtl else part for is_rtl, part in runs]
    base_rtl = next(k for k in kinds if k in _RTL | {"L"}) in _RTL
    return "".join(drawn[::-1] if base_rtl else drawn)


@functools.cache
def _charmaps(families: tuple[str, ...]) -> list[dict]:
    """The character maps of the fonts that `families` resolve to (a generic one such as
    "sans-serif" to its first installed font), as matplotlib's fallback uses them."""
    paths = []
    for family in families:
        try:
            paths.append(font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False))
        except ValueError:  # not installed: matplotlib's fallback skips it too
            continue
    return [font_manager.get_font(path).get_charmap() for path in dict.fromkeys(paths)]


def warn_missing_glyphs(names) -> None:
    """Warn once per name that has a character no font of font.family draws (it would show as a
    box), naming the name and how to get the fonts."""
    cmaps = _charmaps(tuple(matplotlib.rcParams["font.family"]))
    for name in map(str, names):
        if name in _warned:
            continue
        lost = [ch for ch in name if ch.isprintable() and not ch.isspace() and all(ord(ch) not in c for c in cmaps)]
        if lost:
            _warned.add(name)
            warnings.warn(
                f"class name {name!r}: no installed font draws {''.join(dict.fromkeys(lost))!r}, shown as boxes; "
                "install fonts that cover it (Debian: apt-get install fonts-noto-core fonts-noto-cjk)",
                stacklevel=3,
            )
