"""SynthPerson: a procedural, multi-domain person re-identification benchmark.

    path = synth.ensure("small", "/tmp/jreid_data")      # generated once, then cached
    split = market1501.load(path / "d0")

Module map: ``identity`` (who), ``figure`` (drawing a person), ``scene`` and
``camera`` (where, and how it is seen), ``domains`` (camera style ranges),
``render`` (one picture), ``plan`` (which pictures a domain has), ``pool``
(the unlabeled pre-training pool), ``presets``, ``writer`` (disk and cache).
"""
from jreid.data.synth.presets import PRESETS, DomainSpec, PoolSpec, Preset, get_preset
from jreid.data.synth.writer import GENERATOR_VERSION, cache_dir, domain_names, ensure, generate

__all__ = ["PRESETS", "DomainSpec", "PoolSpec", "Preset", "get_preset", "GENERATOR_VERSION",
           "cache_dir", "domain_names", "ensure", "generate"]
