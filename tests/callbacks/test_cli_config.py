"""The callbacks as LightningCLI (jsonargparse) reads them: from YAML, from the command
line, and written back into the config file LightningCLI saves beside each run."""

from __future__ import annotations

import pytest
import torch

import lightning_viz as lv
from lightning_viz.functional import TokenLayout

jsonargparse = pytest.importorskip("jsonargparse")


def logits_of(out):  # an import path without annotations, as a user writes one
    return out["logits"]


def to_grid(out):
    return out[:, 1:].transpose(1, 2).reshape(out.shape[0], out.shape[2], 4, 4)


def _parser(cls):
    parser = jsonargparse.ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "cb")
    return parser


def _build(parser, config):
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    return instantiate(config)["cb"]


def test_an_import_path_is_written_back_as_itself():
    """``output_to_logits: pkg.fn`` was saved as "Unable to serialize instance pkg.fn":
    the saved config.yaml could not run again."""
    parser = _parser(lv.SaliencyLogger)
    path = f"{__name__}.logits_of"
    config = parser.parse_string(f"cb: {{output_to_logits: {path}}}")
    assert _build(parser, config).output_to_logits is logits_of
    dumped = parser.dump(config)
    assert f"output_to_logits: {path}" in dumped
    assert _build(parser, parser.parse_string(dumped)).output_to_logits is logits_of


@pytest.mark.parametrize("cls", [lv.GradCAMLogger, lv.SaliencyLogger, lv.ActivationLogger])
def test_reshape_is_given_as_a_token_layout_or_an_import_path(cls):
    """Both documented forms were refused ("Expected ... to be a subclass of Tensor")."""
    parser = _parser(cls)
    layout = (
        "{class_path: lightning_viz.functional.TokenLayout, "
        "init_args: {input_size: [16, 16], patch_size: [4, 4], num_prefix_tokens: 1}}"
    )
    made = _build(parser, parser.parse_string(f"cb: {{reshape: {layout}}}")).reshape
    assert isinstance(made, TokenLayout)
    tokens = torch.rand(2, 17, 8)
    assert made(tokens).shape == (2, 8, 4, 4)
    path = _build(parser, parser.parse_string(f"cb: {{reshape: {__name__}.to_grid}}")).reshape
    assert path is to_grid
    assert cls(reshape=f"{__name__}.to_grid").reshape is to_grid  # plain kwargs too
    with pytest.raises(ValueError, match="`reshape` must be a callable or an import path"):
        cls(reshape="no_such_module.fn")


@pytest.mark.parametrize("cls", [lv.GradCAMLogger, lv.SaliencyLogger])
def test_a_class_index_target_from_the_command_line_is_an_int(cls):
    """``--cb.target=3`` arrived as the string '3' and was refused."""
    parser = _parser(cls)
    assert _build(parser, parser.parse_args(["--cb.target=3"])).target == 3
    assert _build(parser, parser.parse_args(["--cb.target=true"])).target == "true"
    assert _build(parser, parser.parse_string('cb: {target: "true"}')).target == "true"
    # unquoted, YAML reads a boolean: refused with the choices named (was: "int | str")
    with pytest.raises(Exception, match="predicted") as refused:
        parser.parse_string("cb: {target: true}")
    assert "'true'" in str(refused.value)


def test_one_normalization_value_for_every_channel_from_yaml():
    parser = _parser(lv.GradCAMLogger)
    cb = _build(parser, parser.parse_string("cb: {mean: 0.5, std: 0.25}"))
    assert (cb.mean, cb.std) == ([0.5], [0.25])


def test_one_name_for_a_list_and_the_choices_are_read_from_yaml_as_in_python():
    """H58: ``attacks: pgd`` was refused by jsonargparse ("Expected a Sequence") though
    Python takes one name; a wrong choice (``norm: l1``, ``on_error: ignore``) passed the
    parsing and failed at instantiation, under a dump of every callback's options."""
    parser = _parser(lv.AdversarialProbe)
    cb = _build(parser, parser.parse_string("cb: {attacks: pgd, norm: l2, eps: [0.5]}"))
    assert (cb.attacks, cb.norm) == (["pgd"], "l2")
    for bad, choice in (("norm: l1", "linf"), ("on_error: ignore", "warn")):
        with pytest.raises(Exception, match=choice):
            parser.parse_string(f"cb: {{{bad}}}")
    for cls, key, value in (
        (lv.SaliencyLogger, "methods", "vanilla"),
        (lv.GradCAMLogger, "quality", "deletion"),
        (lv.CorruptionProbe, "corruptions", "fog"),
    ):
        parser = _parser(cls)
        cb = _build(parser, parser.parse_string(f"cb: {{{key}: {value}}}"))
        assert list(getattr(cb, key)) == [value]
