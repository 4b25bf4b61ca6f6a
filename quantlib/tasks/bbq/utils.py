"""lm-eval's BBQ scorer, items in a fixed shuffled order (a limit then covers every category)."""
from lm_eval.tasks.bbq.utils import (  # noqa: F401
    agg_accuracy_amb,
    agg_accuracy_disamb,
    agg_amb_bias_scores,
    agg_disamb_bias_scores,
    doc_to_choice,
    doc_to_target,
    process_results_multiple_choice,
)
from lm_eval.tasks.bbq.utils import process_docs as _process_docs

from quantlib.tasks.common import shuffled


def process_docs(dataset):
    return _process_docs(shuffled(dataset))
