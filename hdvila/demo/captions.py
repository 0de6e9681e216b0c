"""Caption templates with varied phrasing and synonyms.

Every attribute value has several *training* wordings and at least one *held-out* wording, and
there are training and held-out sentence templates. ``wording="train"`` draws only training
wordings and templates; ``wording="heldout"`` only held-out ones, so a model evaluated on held-out
captions has never seen those words or phrasings in training (the pretrained text tower must carry
them).

Video captions state the motion (visible only over time) and the pattern (visible only at full
resolution); image captions state the position instead of a motion.
"""

from __future__ import annotations

import numpy as np

from hdvila.demo.attributes import ATTRIBUTES, HORIZONTAL_WORDS, VERTICAL_WORDS, ImageSpec, VideoSpec

# value -> (training wordings, held-out wordings)
SHAPE_WORDS = {
    "circle": (["circle", "disc", "round shape"], ["orb"]),
    "square": (["square", "box", "block"], ["tile"]),
    "triangle": (["triangle", "three-sided shape", "wedge"], ["pyramid"]),
    "star": (["star", "five-pointed star", "starburst"], ["pentagram"]),
    "diamond": (["diamond", "rhombus", "diamond shape"], ["lozenge"]),
    "cross": (["cross", "plus sign", "plus shape"], ["addition symbol"]),
}
COLOR_WORDS = {
    "red": (["red", "crimson"], ["scarlet"]),
    "orange": (["orange", "tangerine"], ["amber"]),
    "yellow": (["yellow", "golden"], ["lemon"]),
    "green": (["green", "emerald"], ["grass-green"]),
    "cyan": (["cyan", "turquoise"], ["aqua"]),
    "blue": (["blue", "cobalt"], ["sapphire"]),
    "purple": (["purple", "violet"], ["plum"]),
    "pink": (["pink", "rose"], ["blush"]),
}
BACKGROUND_WORDS = {
    "black": (["black", "dark"], ["jet-black"]),
    "white": (["white", "bright white"], ["snowy"]),
    "gray": (["gray", "grey"], ["ash-colored"]),
    "navy": (["navy", "dark blue"], ["midnight blue"]),
}
SIZE_WORDS = {
    "small": (["small", "little", "tiny"], ["miniature"]),
    "large": (["large", "big", "huge"], ["enormous"]),
}
# "with ..." wordings go after the noun, the others before the colour.
PATTERN_WORDS = {
    "plain": (["plain", "solid", "with no pattern"], ["unpatterned"]),
    "striped": (["striped", "with stripes", "banded"], ["pinstriped"]),
    "dotted": (["dotted", "with dots", "spotted"], ["polka-dot"]),
}
MOTION_WORDS = {
    "still": (["staying still", "not moving", "sitting motionless"], ["remaining stationary"]),
    "left": (["moving left", "sliding to the left", "drifting leftward"], ["travelling westward"]),
    "right": (["moving right", "sliding to the right", "drifting rightward"], ["travelling eastward"]),
    "up": (["moving up", "rising", "floating upward"], ["ascending"]),
    "down": (["moving down", "falling", "sinking downward"], ["descending"]),
    "grow": (["growing", "getting bigger", "expanding"], ["swelling up"]),
    "shrink": (["shrinking", "getting smaller", "contracting"], ["dwindling"]),
    "rotate": (["rotating", "spinning", "turning around"], ["twirling"]),
    "recolor": (["changing from {a} to {b}", "turning from {a} to {b}"], ["fading from {a} into {b}"]),
}
BACKGROUND_PHRASES = (["on {abg} background", "against {abg} backdrop", "over {abg} field"],
                      ["set upon {abg} canvas"])
POSITION_PHRASES = (["in the {v} {h}", "at the {v} {h}"], ["toward the {v}-{h} area"])
VIDEO_TEMPLATES = (
    ["{np} {motion} {bg}", "{bgcap}, {np} is {motion}", "a video of {np} {motion} {bg}",
     "there is {np} {bg}, {motion}"],
    ["footage showing {np} that keeps {motion} {bg}"],
)
IMAGE_TEMPLATES = (
    ["{np} {pos} {bg}", "{bgcap}, with {np} {pos}", "a picture of {np} {bg} {pos}",
     "there is {np} {pos} {bg}"],
    ["a rendering that depicts {np} {bg}, located {pos}"],
)


def _pick(rng: np.random.Generator, options: tuple[list[str], list[str]], wording: str) -> str:
    if wording not in ("train", "heldout"):
        raise ValueError(f"wording must be 'train' or 'heldout', got {wording!r}")
    choices = options[0] if wording == "train" else options[1]
    return choices[int(rng.integers(len(choices)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _noun_phrase(rng, shape: str, color: str | None, size: str | None, pattern: str, wording: str) -> str:
    pat = _pick(rng, PATTERN_WORDS[pattern], wording)
    words = [] if size is None else [_pick(rng, SIZE_WORDS[size], wording)]
    if not pat.startswith("with"):
        words.append(pat)
    if color is not None:
        words.append(_pick(rng, COLOR_WORDS[color], wording))
    words.append(_pick(rng, SHAPE_WORDS[shape], wording))
    if pat.startswith("with"):
        words.append(pat)
    return _article(" ".join(words))


def _background(rng, background: str, wording: str) -> tuple[str, str]:
    bgw = _pick(rng, BACKGROUND_WORDS[background], wording)
    phrase = _pick(rng, BACKGROUND_PHRASES, wording).format(abg=_article(bgw))
    cap = f"{_article(bgw)} background" if wording == "train" else f"{_article(bgw)} canvas"
    return phrase, cap


def caption_video(spec: VideoSpec, rng: np.random.Generator, wording: str = "train") -> str:
    """One caption of a video spec, drawn with ``rng``."""
    recolor = spec.motion == "recolor"
    np_ = _noun_phrase(rng, spec.shape, None if recolor else spec.color, spec.size, spec.pattern, wording)
    motion = _pick(rng, MOTION_WORDS[spec.motion], wording)
    if recolor:
        motion = motion.format(a=_pick(rng, COLOR_WORDS[spec.color], wording),
                               b=_pick(rng, COLOR_WORDS[spec.end_color], wording))
    bg, bgcap = _background(rng, spec.background, wording)
    template = _pick(rng, VIDEO_TEMPLATES, wording)
    return template.format(np=np_, motion=motion, bg=bg, bgcap=bgcap)


def position_words(spec: ImageSpec) -> tuple[str, str]:
    return VERTICAL_WORDS[spec.row], HORIZONTAL_WORDS[spec.col]


def caption_image(spec: ImageSpec, rng: np.random.Generator, wording: str = "train") -> str:
    """One caption of an image spec, drawn with ``rng``."""
    np_ = _noun_phrase(rng, spec.shape, spec.color, spec.size, spec.pattern, wording)
    v, h = position_words(spec)
    if (v, h) == ("middle", "center"):
        pos = "in the center" if wording == "train" else "toward the very middle"
    else:
        pos = _pick(rng, POSITION_PHRASES, wording).format(v=v, h=h)
    bg, bgcap = _background(rng, spec.background, wording)
    template = _pick(rng, IMAGE_TEMPLATES, wording)
    return template.format(np=np_, pos=pos, bg=bg, bgcap=bgcap)


# Short prompts naming one value (a zero-shot reading's candidates, and the value-prompt loss of training).
WORDS = {"shape": SHAPE_WORDS, "color": COLOR_WORDS, "pattern": PATTERN_WORDS, "size": SIZE_WORDS,
         "background": BACKGROUND_WORDS}
#: Short prompt per attribute: ``{w}`` is the value's word, ``{a}`` the word with its article.
SHORT_TEMPLATES = {
    "shape": "{a}",                       # "a star", "an orb"
    "color": "{a} one",                   # "a red one", "an amber one"
    "pattern": "{a} one",                 # "a striped one" ("one with stripes" for a "with ..." word)
    "size": "{a} one",                    # "a large one"
    "background": "on {a} background",    # "on a black background"
}


def value_prompts(attribute: str, wording: str = "train") -> list[str]:
    """The short prompts of every value of ``attribute``, in ``ATTRIBUTES[attribute]`` order
    (see :data:`SHORT_TEMPLATES`), e.g. ``value_prompts("pattern")`` -> ["a plain one", "a striped
    one", "a dotted one"]."""
    if attribute not in WORDS or wording not in ("train", "heldout"):
        raise ValueError(f"attribute must be one of {tuple(WORDS)} and wording 'train' or 'heldout', "
                         f"got {attribute!r}, {wording!r}")
    k = ("train", "heldout").index(wording)
    out = []
    for value in ATTRIBUTES[attribute]:
        w = WORDS[attribute][value][k][0]
        if w.startswith("with "):
            out.append(f"one {w}")
        else:
            out.append(SHORT_TEMPLATES[attribute].format(w=w, a=_article(w)))
    return out
