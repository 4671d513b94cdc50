"""Reproducible studies on real data.

* :mod:`kdsleep.study.slpdb` -- sleep staging from heart rate on the MIT-BIH Polysomnographic Database,
  cross-validated by subject (``kdsleep study slpdb``): :func:`~kdsleep.study.slpdb.run_study`.
* :mod:`kdsleep.study.hr_recipe` -- the heart-rate stager recipe (``python -m kdsleep.study.hr_recipe``).
* :mod:`kdsleep.study.folds` -- folds by subject.
* :mod:`kdsleep.study.data` -- study records and their epoch-aligned windows.
* :mod:`kdsleep.study.report` -- the study's Markdown / JSON / PNG report.

Submodules are imported on use, so that importing this package stays cheap.
"""
