"""The assurance objectives a compressed model's report is traced to (docs/method.md §12.4).

The catalogue holds the objectives of EASA's *Artificial Intelligence Concept Paper Issue 02: Guidance for
Level 1 & 2 machine learning applications* (March 2024) that bear on a model which is trained, compressed
(pruned, sliced, quantised), exported and deployed on a flight processor: data-set independence (DM-06),
model optimisation and training reproducibility (LM-06, LM-07), the implementation objectives on the
inference model (IMP-04, IMP-06 to IMP-10), configuration management (CM-01) and development
explainability (EXP-03). Each objective appears once.

The statements are **paraphrased** (``wording = "paraphrased"``): the published text could not be quoted
here word for word, so the report never presents them as quotations; a reviewer checks them against the
document (:data:`EASA_SOURCE`). NASA's software assurance standards are listed as :data:`REFERENCES`:
the context a NASA review board reads the matrix in, not objectives etdeploy claims to meet.
"""

from __future__ import annotations

from dataclasses import dataclass

from etdeploy.records import Record

EASA_SOURCE = ("EASA Artificial Intelligence Concept Paper Issue 02, Guidance for Level 1 & 2 machine learning "
               "applications (March 2024), EASA document library (easa.europa.eu, general publications)")
#: where to read it (kept out of the report, which links nowhere: it must open offline)
EASA_URL = ("https://www.easa.europa.eu/en/document-library/general-publications/"
            "easa-artificial-intelligence-concept-paper-issue-2")


@dataclass(frozen=True)
class Objective(Record):
    """One objective: identifier, the building block it belongs to, a short title, what it asks
    (``statement``, in the words ``wording`` says: ``"paraphrased"``) and where it is published."""

    id: str
    block: str
    title: str
    statement: str
    wording: str
    source: str


@dataclass(frozen=True)
class Reference(Record):
    """A standard a review board reads the evidence against (context, not traced row by row)."""

    id: str
    title: str
    relevance: str


def _easa(id: str, block: str, title: str, statement: str) -> Objective:
    return Objective(id=id, block=block, title=title, statement=statement, wording="paraphrased", source=EASA_SOURCE)


#: The objectives, in the order the matrix lists them (each id once).
OBJECTIVES: tuple[Objective, ...] = (
    _easa("DM-06", "learning assurance: data management", "independent data sets",
          "The data are distributed into training, validation and test sets that are independent of each other "
          "(no item in more than one set), so that the test set measures generalisation."),
    _easa("LM-06", "learning assurance: learning process management", "model optimisation documented",
          "Any optimisation of the trained model (such as pruning or quantisation) is identified and documented, "
          "and its impact on the model's behaviour and performance is assessed."),
    _easa("LM-07", "learning assurance: learning process management", "training reproducible",
          "The training is reproducible: the learning environment, settings, seeds and data are recorded so "
          "that the trained model can be regenerated."),
    _easa("IMP-04", "learning assurance: model implementation", "post-training transformations",
          "Every transformation applied to the trained model after training (conversion, optimisation such as "
          "pruning, slicing or quantisation) is identified and validated for its impact on the model's behaviour "
          "and performance, and the tools used for it are identified."),
    _easa("IMP-06", "learning assurance: model implementation", "model properties preserved",
          "The transformations performed to obtain the inference model did not adversely alter the properties "
          "defined for the trained model."),
    _easa("IMP-07", "learning assurance: model implementation", "training vs target platform",
          "Differences between the software and hardware used for training and verification and those of the "
          "target platform are identified and assessed for their possible impact on the inference model's "
          "behaviour and performance."),
    _easa("IMP-08", "learning assurance: inference model verification", "performance re-verified",
          "The performance of the inference model (the model as deployed) is evaluated on the test data set and "
          "the result documented."),
    _easa("IMP-09", "learning assurance: inference model verification", "stability re-verified",
          "The stability of the inference model is verified and documented: small, nominal variations of the "
          "input do not change its outputs unduly."),
    _easa("IMP-10", "learning assurance: inference model verification", "robustness re-verified",
          "The robustness of the inference model in adverse conditions (degraded, out-of-nominal inputs) is "
          "verified and documented."),
    _easa("CM-01", "learning assurance: configuration management", "configuration management",
          "Configuration management is applied to the AI-based system: configuration items identified and "
          "versioned, baselines, change control, reproducibility, problem reporting, archiving and retrieval."),
    _easa("EXP-03", "AI explainability: development explainability", "explanation methods at item level",
          "The methods that explain the ML model's outputs to its developers and assessors (at the level of the "
          "item and of individual outputs) are identified and documented, with their results."),
)

REFERENCES: tuple[Reference, ...] = (
    Reference("NASA-STD-8739.8B", "NASA Software Assurance and Software Safety Standard (2022)",
              "software assurance and safety analyses of flight software, which includes the deployed model and "
              "its runtime; the matrix and the problem reports are inputs to them, not a substitute."),
    Reference("NPR 7150.2D", "NASA Software Engineering Requirements (2022)",
              "software classification, configuration management, verification and validation requirements "
              "the project's own plans apply; the configuration index and the acceptance criteria support them."),
)


def objective(id: str) -> Objective:
    """The catalogued objective ``id`` (``KeyError`` naming the known ids otherwise)."""
    for o in OBJECTIVES:
        if o.id == id:
            return o
    raise KeyError(f"no objective {id!r}; catalogued: {', '.join(o.id for o in OBJECTIVES)}")


__all__ = ["EASA_SOURCE", "EASA_URL", "OBJECTIVES", "REFERENCES", "Objective", "Reference", "objective"]
