"""``otsolve bench``: otsolve's solvers and every installed peer on seeded problem families, in one
process, with a report (report.md, results.json, plots). See :func:`otsolve.bench.run`."""
from .problems import PROBLEMS, Problem, dotmark_problems, make_problem, read_dotmark_image
from .harness import SUITES, BenchResult, run
from .solvers import MISSING, SOLVERS, Outcome, Solver, register, unregister

__all__ = ["run", "BenchResult", "SUITES", "PROBLEMS", "Problem", "make_problem", "dotmark_problems",
           "read_dotmark_image", "SOLVERS", "MISSING", "Solver", "Outcome", "register", "unregister"]
