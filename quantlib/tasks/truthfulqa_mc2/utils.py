from lm_eval.tasks.truthfulqa.utils import process_results_mc2 as process_results  # noqa: F401

from quantlib.tasks.common import truthfulqa_targets as process_docs  # noqa: F401
