def process_docs(dataset):
    """Offline CSVs carry choice0..choice3; the hub copy carries a `choices` list. Unify to `choices`."""
    if "choices" in dataset.column_names:
        return dataset
    return dataset.map(lambda d: {"choices": [str(d[f"choice{i}"]) for i in range(4)], "answer": int(d["answer"])})
