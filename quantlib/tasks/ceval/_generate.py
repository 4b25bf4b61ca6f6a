"""Writes one task YAML per C-Eval subject and _groups.yaml (run once; the outputs are committed).

Subject names in Chinese come from lm-eval's C-Eval task; the four disciplines and the Hard subset
follow the C-Eval paper (Huang et al., 2023, Table 6 and Section 2.4)."""
from pathlib import Path

import yaml
from lm_eval.tasks.ceval._generate_configs import SUBJECTS  # subject -> Chinese name

DISCIPLINES = {
    "STEM": """computer_network operating_system computer_architecture college_programming college_physics
        college_chemistry advanced_mathematics probability_and_statistics discrete_mathematics
        electrical_engineer metrology_engineer high_school_mathematics high_school_physics
        high_school_chemistry high_school_biology middle_school_mathematics middle_school_biology
        middle_school_physics middle_school_chemistry veterinary_medicine""",
    "Social Science": """college_economics business_administration marxism mao_zedong_thought
        education_science teacher_qualification high_school_politics high_school_geography
        middle_school_politics middle_school_geography""",
    "Humanities": """modern_chinese_history ideological_and_moral_cultivation logic law
        chinese_language_and_literature art_studies professional_tour_guide legal_professional
        high_school_chinese high_school_history middle_school_history""",
    "Other": """civil_servant sports_science plant_protection basic_medicine clinical_medicine
        urban_and_rural_planner accountant fire_engineer environmental_impact_assessment_engineer
        tax_accountant physician""",
    "Hard": """advanced_mathematics discrete_mathematics probability_and_statistics college_chemistry
        college_physics high_school_mathematics high_school_chemistry high_school_physics""",
}

if __name__ == "__main__":
    here = Path(__file__).parent
    groups = {g: [f"quantlib_ceval_{s}" for s in subjects.split()] for g, subjects in DISCIPLINES.items()}
    assert {t for g in ("STEM", "Social Science", "Humanities", "Other") for t in groups[g]} == {
        f"quantlib_ceval_{s}" for s in SUBJECTS}
    (here / "_groups.yaml").write_text(yaml.safe_dump(groups, allow_unicode=True, sort_keys=False))
    for s, zh in SUBJECTS.items():
        (here / f"ceval_{s}.yaml").write_text(
            f'include: _default_template_yaml\ntask: quantlib_ceval_{s}\ntask_alias: "{s.replace("_", " ")}"\n'
            f'dataset_name: {s}\n'
            f'description: "以下是中国关于{zh}考试的单项选择题，请选出其中的正确答案。\\n\\n"\n')
