"""The judge: an attribute classifier for demo-domain images, the independent referee that scores
edits and super-resolved outputs. A referee only: no model it scores may use it in a training loss,
for early stopping or to pick checkpoints."""

from hdvila.judge.model import ATTRIBUTE_NAMES, AttributeJudge, JudgeConfig, load_judge

__all__ = ["ATTRIBUTE_NAMES", "AttributeJudge", "JudgeConfig", "load_judge"]
