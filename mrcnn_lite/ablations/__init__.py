"""The paper's ablations, rerun with seeds: Table 2 (a-e), the class-agnostic remark and Table 3's box AP.

- :mod:`.grid`: the runs, the table rows, the claims and the schedules (grid presets);
- :mod:`.runner`: executes ``notebooks/experiments/ablation_run.ipynb`` with papermill per (run, seed),
  resumably, and assembles the table (``python -m mrcnn_lite table2``, ``make table2``);
- :mod:`.report`: mean and std over seeds, deltas and claim verdicts, ``results/table2.md/.csv`` and
  ``figures/table2.png``;
- :mod:`.qualitative`: RoIPool's masks beside RoIAlign's, object by object;
- ``paper_table2.json``: the paper's numbers, cited table by table.

Notebook ``08_table2_ablations`` explains the study and shows its results.
"""
