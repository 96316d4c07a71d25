"""The diagnostic codes: one constant per code, in one table (as mypy's errorcodes.py).

A code is the stable string users see in brackets (``error[shape-mismatch]``), test annotations name
(``# error: shape-mismatch``) and JSON carries.  Every stage reports with these constants, never with a
string literal, so a misspelt code is a NameError at import time (and a type error for mypy), not a
diagnostic that no test, annotation or `dlspec codes` line knows about.
"""

from __future__ import annotations

from typing import Any


class ErrorCode(str):
    """A code: the string itself (so ``d.code == "rank"`` holds) and one line on what it means."""

    description: str
    public: bool

    def __new__(cls, code: str, description: str, public: bool = True) -> ErrorCode:
        obj = super().__new__(cls, code)
        obj.description = description
        obj.public = public
        return obj

    def __reduce__(self) -> tuple[Any, ...]:  # pickled (another process's diagnostics) as the code it is
        return (ErrorCode, (str(self), self.description, self.public))


# --- reading the file ----------------------------------------------------------------------------------
YAML_SYNTAX = ErrorCode("yaml-syntax", "the file is not valid YAML")
IO = ErrorCode("io", "the file cannot be read")
DUPLICATE_KEY = ErrorCode("duplicate-key", "a mapping has the same key twice (YAML would silently keep the last)")
OVERRIDE = ErrorCode("override", "a command-line PATH=VALUE override cannot be applied to the spec")
LIMIT = ErrorCode("limit", "the spec goes beyond a documented bound (file size, YAML nodes or nesting, layers)")

# --- the spec's structure and layer entries ------------------------------------------------------------
SPEC_STRUCTURE = ErrorCode("spec-structure", "a top-level key is missing, unknown or of the wrong type")
MISSING_INPUT = ErrorCode("missing-input", "the spec has no `input` shape")
INVALID_INPUT = ErrorCode("invalid-input", "the `input` shape is malformed")
UNKNOWN_LAYER = ErrorCode("unknown-layer", "no layer type of that name")
UNKNOWN_ARGUMENT = ErrorCode("unknown-argument", "the layer type has no argument of that name")
MISSING_ARGUMENT = ErrorCode("missing-argument", "a required argument is not given")
INVALID_ARGUMENT = ErrorCode("invalid-argument", "an argument has the wrong type or an impossible value")
INVALID_LAYER = ErrorCode("invalid-layer", "a layer entry is not written as `- Name` or `- Name: {args}`")
RECURSIVE_BLOCK = ErrorCode("recursive-block", "a block uses itself")
REFERENCE = ErrorCode("reference", "`from:` names no earlier layer or input, or a layer reads more (or fewer) "
                      "inputs than it takes")

# --- the shape pass --------------------------------------------------------------------------------------
SHAPE_MISMATCH = ErrorCode("shape-mismatch", "a written input size disagrees with the size the layer receives")
RANK = ErrorCode("rank", "the layer receives a tensor with the wrong number of dimensions")
CHANNELS_LAST = ErrorCode("channels-last", "an image input written channels-last (H, W, C), where torch reads (C, H, W)")
KERNEL_TOO_LARGE = ErrorCode("kernel-too-large", "the (dilated) kernel is larger than the padded input")
OUTPUT_TOO_SMALL = ErrorCode("output-too-small", "the layer would produce an empty output")
PADDING = ErrorCode("padding", "padding is larger than torch allows for this layer")
GROUPS = ErrorCode("groups", "groups (or heads) do not divide the channels")
OUTPUT_PADDING = ErrorCode("output-padding", "output_padding must be smaller than stride or dilation")
SYMBOLIC_SIZE = ErrorCode("symbolic-size", "a symbolic (variable) size reaches a layer that needs a fixed size")
DTYPE = ErrorCode("dtype", "the layer receives the wrong kind of values (integer ids vs float features)")
EXPECT_MISMATCH = ErrorCode("expect-mismatch", "a layer's output differs from its `expect:`")
MERGE_SHAPE = ErrorCode("merge-shape", "Residual / Concat branches produce shapes that cannot be merged")
RESHAPE = ErrorCode("reshape", "Reshape / Unflatten sizes do not multiply to the input size")
LAYOUT = ErrorCode("layout", "a layer reads a channels-first map as a sequence (or the other way): the axes mix")
BATCH_FIRST = ErrorCode("batch-first", "a recurrent or attention layer reads (N, T, F) data with batch_first false")
FORGOTTEN_FLATTEN = ErrorCode("forgotten-flatten", "a Linear is applied to a feature map (a Flatten is probably missing)")
NO_EFFECT = ErrorCode("no-effect", "an argument that has no effect in this position")
IMPLICIT_DIM = ErrorCode("implicit-dim", "Softmax-like layer without `dim`")
MODEL_SIZE = ErrorCode("model-size", "the model is larger than most machines can hold (parameters or activations)")
UNKNOWN_SIZE = ErrorCode("unknown-size", "a size the layer needs cannot be inferred (a guard: no known spec reaches it)")
# a shape rule's signal that a size is unknown after an earlier error: the pass stops quietly, nothing is reported
NOT_KNOWN = ErrorCode("not-known", "internal: a size is unknown after an earlier error", public=False)

# --- `train:`: checked by `dlspec check` (statically) and again by `dlspec run` ---------------------------
TRAIN = ErrorCode("train", "a `train:` option is unknown, misspelled or of the wrong type")
TORCH_NAME = ErrorCode("torch-name", "no torch loss, optimizer or scheduler of that name, or no such argument of it")
UNKNOWN_DATASET = ErrorCode("unknown-dataset", "no dataset of that name")
DATA = ErrorCode("data", "the data cannot be read (missing or corrupted files, wrong arrays)")
DATA_SHAPE = ErrorCode("data-shape", "the dataset's samples do not have the spec's input shape")
LOSS = ErrorCode("loss", "the loss cannot compare the model's output with the dataset's targets")
CLASSES = ErrorCode("classes", "the last layer's size differs from the number of classes")
METRIC = ErrorCode("metric", "a metric does not apply to the task, or early stopping watches one the run never computes")
DOUBLE_SOFTMAX = ErrorCode("double-softmax", "Softmax before CrossEntropyLoss (which applies log-softmax itself)")
NLL_WITHOUT_LOG_SOFTMAX = ErrorCode("nll-without-log-softmax", "NLLLoss on a model that does not end with LogSoftmax")
BCE_WITHOUT_SIGMOID = ErrorCode("bce-without-sigmoid", "BCELoss on a model that does not end with Sigmoid")
DEVICE = ErrorCode("device", "the requested device is not available")
PRECISION = ErrorCode("precision", "the requested precision is not available on the device")
MEMORY = ErrorCode("memory", "the model, its optimizer state and a batch's activations would not fit in the device's memory")
RUNTIME = ErrorCode("runtime", "torch refuses the model or the data at the trial step taken before the run starts")


ALL: tuple[ErrorCode, ...] = tuple(v for v in globals().values() if isinstance(v, ErrorCode) and v.public)
# code -> one line saying what it means (printed by `dlspec codes`, documented in docs/diagnostics.md)
CODES: dict[str, str] = {str(c): c.description for c in ALL}
