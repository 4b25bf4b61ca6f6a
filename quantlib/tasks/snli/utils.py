from quantlib.tasks.common import shuffled


def process_docs(dataset):
    """Drop pairs without a gold label (-1 on the hub), then a fixed order."""
    return shuffled(dataset.filter(lambda d: int(d["label"]) in (0, 1, 2)).map(lambda d: {"label": int(d["label"])}))
