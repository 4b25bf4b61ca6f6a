from quantlib.tasks.common import corpus_bleu, flores_pairs


def load(**_):
    return flores_pairs("eng_Latn", "zho_Hans")


def process_results(doc, results):
    return {"bleu": (doc["target"], results[0])}


def bleu(items):
    return corpus_bleu(items, tokenize="zh")
