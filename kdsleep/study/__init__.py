"""Reproducible studies on real data.

* :mod:`kdsleep.study.slpdb` -- sleep staging from heart rate on the MIT-BIH Polysomnographic Database,
  cross-validated by subject (``kdsleep study slpdb``): :func:`~kdsleep.study.slpdb.run_study`.
* :mod:`kdsleep.study.hrv_features` -- heart-rate-variability features per 30-s epoch (the classical baseline).
* :mod:`kdsleep.study.folds` -- folds by subject.
* :mod:`kdsleep.study.data` -- study records and their epoch-aligned windows.
* :mod:`kdsleep.study.report` -- the study's Markdown / JSON / PNG report.

Submodules are imported on use, so that importing this package stays cheap.
"""
