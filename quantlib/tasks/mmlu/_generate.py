"""Writes one task YAML per MMLU subject and _groups.yaml, the four disciplines of lm-eval's MMLU
(STEM, humanities, social sciences, other) as in the paper's Table 9 (run once; outputs committed)."""
from pathlib import Path

import yaml

SUBJECTS = """abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology
college_chemistry college_computer_science college_mathematics college_medicine college_physics
computer_security conceptual_physics econometrics electrical_engineering elementary_mathematics
formal_logic global_facts high_school_biology high_school_chemistry high_school_computer_science
high_school_european_history high_school_geography high_school_government_and_politics
high_school_macroeconomics high_school_mathematics high_school_microeconomics high_school_physics
high_school_psychology high_school_statistics high_school_us_history high_school_world_history
human_aging human_sexuality international_law jurisprudence logical_fallacies machine_learning
management marketing medical_genetics miscellaneous moral_disputes moral_scenarios nutrition
philosophy prehistory professional_accounting professional_law professional_medicine
professional_psychology public_relations security_studies sociology us_foreign_policy virology
world_religions""".split()

if __name__ == "__main__":
    from lm_eval.tasks.mmlu._generate_configs import SUBJECTS as CATEGORY  # subject -> discipline

    here = Path(__file__).parent
    names = {"stem": "STEM", "humanities": "Humanities", "social_sciences": "Social Sciences", "other": "Other"}
    groups = {n: [f"quantlib_mmlu_{s}" for s in SUBJECTS if CATEGORY[s] == c] for c, n in names.items()}
    (here / "_groups.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    for s in SUBJECTS:
        nice = s.replace("_", " ")
        (here / f"mmlu_{s}.yaml").write_text(
            f'include: _default_template_yaml\ntask: quantlib_mmlu_{s}\ntask_alias: "{nice}"\n'
            f'dataset_name: {s}\n'
            f'description: "The following are multiple choice questions (with answers) about {nice}.\\n\\n"\n')
