"""Passes over the IR: the pass interface, pipelines, the pass manager, pattern rewriting and
the registry (built-in passes and plugins share the entry-point group ``optllm.plugins``).

    from optllm.passes import run_pipeline
    report = run_pipeline(module, "canonicalize,cse,dce", pass_statistics=True)
    report.to_dict()

One pass per module: ``dce.py`` is ``dce``, ``cse.py`` is ``cse``, ``canonicalize.py`` is
``canonicalize``.
"""

from optllm.passes.base import OptionInfo, Pass, PassContext, PassError, PassResult, option
from optllm.passes.manager import (
    Instrumentation,
    PassManager,
    PassRecord,
    PipelineReport,
    module_stats,
    run_pipeline,
)
from optllm.passes.pipeline import (
    NAMED_PIPELINES,
    PassSpec,
    Pipeline,
    PipelineError,
    parse_pipeline,
    register_pipeline,
)
from optllm.passes.registry import (
    REGISTRY,
    PluginError,
    RegistryError,
    UnknownPassError,
    get_pass,
    load_plugin,
    pass_names,
    register_pass,
)
from optllm.passes.rewrite import (
    GreedyResult,
    Match,
    Pattern,
    RewriteError,
    Rewriter,
    apply_patterns_greedily,
)

__all__ = [
    "NAMED_PIPELINES", "REGISTRY", "GreedyResult", "Instrumentation", "Match", "OptionInfo", "Pass",
    "PassContext", "PassError", "PassManager", "PassRecord", "PassResult", "PassSpec", "Pattern", "Pipeline",
    "PipelineError", "PipelineReport", "PluginError", "RegistryError", "RewriteError", "Rewriter",
    "UnknownPassError", "apply_patterns_greedily", "get_pass", "load_plugin", "module_stats", "option",
    "parse_pipeline", "pass_names", "register_pass", "register_pipeline", "run_pipeline",
]
