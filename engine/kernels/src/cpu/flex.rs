//! Where the training step's own operations meet burn: the tensors of a model run on any
//! device, and only those on flex take the CPU kernels of `conv`, `batch_norm`, `grid_sample`
//! and `pool`. One place decides what "on flex" means — the
//! `Autodiff<Flex>` backend under either checkpointing strategy, or plain flex for the
//! operations that also run without autodiff — and holds the conversions between burn's tensors
//! and flex's primitives that those operations share.

use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy, NoCheckpointing};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex};
use burn::tensor::Tensor;
use std::borrow::Cow;

/// A flex tensor's primitive, what the operations compute on.
pub type FlexPrimitive = FloatTensor<Flex>;

/// An operation with its own path on `Autodiff<Flex, C>`, run by [`on_autodiff_flex`].
pub(super) trait AutodiffFlexOp {
    type Output;
    /// Computes the operation and records its backward step; `None` when its tensors are not on
    /// `Autodiff<Flex, C>`.
    fn on_autodiff<C>(&self) -> Option<Self::Output>
    where
        C: CheckpointStrategy,
        DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>;
}

/// The operation on `Autodiff<Flex>` with whichever checkpointing strategy its tensors have;
/// `None` on any other device (the caller then composes burn's operations).
pub(super) fn on_autodiff_flex<O: AutodiffFlexOp>(op: &O) -> Option<O::Output> {
    op.on_autodiff::<NoCheckpointing>()
        .or_else(|| op.on_autodiff::<BalancedCheckpointing>())
}

/// An operation of one input on flex, recorded on `Autodiff<Flex, C>` by [`on_flex`].
pub(super) trait FlexUnaryOp {
    /// Computes the operation and records its backward step on the graph.
    fn record<C: CheckpointStrategy>(&self, x: FloatTensor<Autodiff<Flex, C>>) -> FloatTensor<Autodiff<Flex, C>>;
    /// Computes it without autodiff.
    fn plain(&self, x: FlexPrimitive) -> FlexPrimitive;
}

/// `op(x)` where `x` is on flex, with autodiff (either checkpointing strategy) or without;
/// `None` on any other device.
pub(super) fn on_flex<O: FlexUnaryOp, const D: usize>(op: &O, x: &Tensor<D>) -> Option<Tensor<D>> {
    on_autodiff_flex(&Unary { op, x }).or_else(|| {
        let x = x.clone().try_into_primitive::<Flex>().ok()?;
        Some(Tensor::from_primitive::<Flex>(op.plain(x)))
    })
}

/// A one-input operation and its input, as an [`AutodiffFlexOp`].
struct Unary<'a, O, const D: usize> {
    op: &'a O,
    x: &'a Tensor<D>,
}

impl<O: FlexUnaryOp, const D: usize> AutodiffFlexOp for Unary<'_, O, D> {
    type Output = Tensor<D>;

    fn on_autodiff<C>(&self) -> Option<Tensor<D>>
    where
        C: CheckpointStrategy,
        DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
    {
        let x = self.x.clone().try_into_primitive::<Autodiff<Flex, C>>().ok()?;
        Some(Tensor::from_primitive::<Autodiff<Flex, C>>(self.op.record::<C>(x)))
    }
}

/// A flex primitive as a tensor.
pub(super) fn flex<const D: usize>(primitive: FlexPrimitive) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(primitive)
}

/// The shape of a 4-D flex primitive.
pub(super) fn dims4(primitive: &FlexPrimitive) -> [usize; 4] {
    flex::<4>(primitive.clone()).dims()
}

/// A flex tensor's values without a copy where they are contiguous f32.
pub fn values(tensor: &FlexPrimitive) -> Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(slice) => Cow::Borrowed(slice),
        None => Cow::Owned(
            tensor
                .clone()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap_or_else(|e| unreachable!("converted to f32: {e:?}")),
        ),
    }
}

/// The flex primitive of a tensor made on flex here.
pub(super) fn primitive<const D: usize>(tensor: Tensor<D>) -> FlexPrimitive {
    tensor
        .try_into_primitive::<Flex>()
        .unwrap_or_else(|e| unreachable!("a flex tensor made here: {e:?}"))
}
