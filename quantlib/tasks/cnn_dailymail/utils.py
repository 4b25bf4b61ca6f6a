from quantlib.tasks.common import rouge, shuffled, truncate_words

MAX_WORDS = 400


def process_docs(dataset):
    return shuffled(dataset).map(lambda d: {"article": truncate_words(d["article"], MAX_WORDS)})


def process_results(doc, results):
    return rouge(doc["highlights"], results[0])
