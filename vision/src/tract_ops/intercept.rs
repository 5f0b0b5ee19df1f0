//! Taking over some nodes of an ONNX operator while tract keeps the rest: the operator's parser
//! entry is replaced by one that calls tract's own and wraps the expansion it returns, so that
//! at wiring time (shapes and constants known) a [`Rewire`] can put our operator in the node's
//! place or leave tract's wiring. Type inference stays tract's.

use std::sync::OnceLock;

use tract_onnx::model::{Onnx, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// An ONNX parser entry.
pub(super) type Builder = fn(&ParsingContext, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// Our wiring for some nodes of one operator.
pub(super) trait Rewire: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// The node wired our way, or `None` to keep tract's wiring of `inner` (what tract's
    /// parser made of the node).
    fn wire(
        &self,
        inner: &dyn Expansion,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<Option<TVec<OutletId>>>;
}

/// Makes `onnx` parse `op` with `parse`, keeping tract's parser for it in `stock`.
pub(super) fn replace(onnx: &mut Onnx, op: &'static str, stock: &'static OnceLock<Builder>, parse: Builder) {
    if let Some(tracts) = onnx.op_register.0.get(op) {
        let _ = stock.set(*tracts);
        onnx.op_register.insert(op, parse);
    }
}

/// What tract's parser in `stock` makes of `node`, its expansion wrapped so that `ours` is
/// asked first at wiring time (an op that is not an expansion is returned as it is).
pub(super) fn parse_with<R: Rewire>(
    stock: &OnceLock<Builder>,
    ctx: &ParsingContext,
    node: &NodeProto,
    ours: impl FnOnce() -> TractResult<R>,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let tracts = stock.get().with_context(|| format!("tract's {} parser was not registered", node.op_type))?;
    let (op, outputs) = tracts(ctx, node)?;
    let Some(inner) = op.as_op().downcast_ref::<Box<dyn Expansion>>() else {
        return Ok((op, outputs));
    };
    Ok((expand(Intercepted { inner: inner.clone(), ours: ours()? }), outputs))
}

/// tract's expansion of a node, with ours in front.
#[derive(Debug, Clone)]
struct Intercepted<R> {
    inner: Box<dyn Expansion>,
    ours: R,
}

impl<R: Rewire> Expansion for Intercepted<R> {
    fn name(&self) -> StaticName {
        self.inner.name()
    }

    fn validation(&self) -> Validation {
        self.inner.validation()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        self.inner.rules(s, inputs, outputs)
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        match self.ours.wire(self.inner.as_ref(), prefix, model, inputs)? {
            Some(wired) => Ok(wired),
            None => self.inner.wire(prefix, model, inputs),
        }
    }
}
