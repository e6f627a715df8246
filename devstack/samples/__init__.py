"""Deterministic sample model repositories for the tests and the local demo (`curate dev up`).

`build_samples(root)` writes them into a `devstack.repostore.RepoStore` (built once, then cached) and
returns a `SampleSet`: each repo's revision, kind and the verdict and finding codes screening must produce
(`devstack.samples.expectations`). `bump_revision(store, repo_id)` makes a new upstream revision.
"""

from __future__ import annotations

from devstack.samples.build import Sample, SampleSet, build_samples, bump_revision, export_repo
from devstack.samples.errors import SamplesError
from devstack.samples.expectations import SampleKind

__all__ = [
    "Sample",
    "SampleKind",
    "SampleSet",
    "SamplesError",
    "build_samples",
    "bump_revision",
    "export_repo",
]
