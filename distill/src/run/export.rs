//! The export stage: the best student as a Hugging Face folder with its model card, and its ONNX graphs
//! when asked.

use std::path::PathBuf;

use anyhow::Result;

use super::plan::Plan;

/// The export stage of a run.
pub struct ExportStage<'a> {
    plan: &'a Plan,
}

impl<'a> ExportStage<'a> {
    pub fn new(plan: &'a Plan) -> Self {
        Self { plan }
    }

    /// Stage 4: writes the Hugging Face export of the best student.
    /// Writes the best student as a Hugging Face folder, plus `model.onnx` (and `model.int8.onnx`)
    /// in it when asked.
    pub fn write(&self, out: Option<PathBuf>, onnx: bool, int8: bool) -> Result<PathBuf> {
        let dest = out.unwrap_or_else(|| self.plan.out().join("export"));
        let best = self.plan.student_dir().join("best");
        let tok = self.plan.student_tokenizer()?;
        // Replacing the folder waits for no reader: a `serve` or `predict` on it holds a shared lock.
        let _readers_out = inference::Lock::replacing(&dest)?;
        modeling::export::export(&best, &tok, &dest)?;
        // The run's comparison, when `compare` has written one, fills the card's table and model-index.
        let report: Option<crate::report::Report> =
            std::fs::read_to_string(self.plan.out().join("report.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        let card = crate::run::card::model_card(self.plan, &dest, report.as_ref())?;
        modeling::write_atomic(&dest.join("README.md"), card.as_bytes())?;
        tracing::info!("export: wrote {}", dest.display());
        let mut variants = Vec::new();
        if onnx {
            variants.push(("model.onnx", false));
        }
        if int8 {
            variants.push(("model.int8.onnx", true));
        }
        for (name, q) in variants {
            modeling::onnx::write(&dest, &dest.join(name), q)?;
            tracing::info!("export: wrote {}", dest.join(name).display());
        }
        Ok(dest)
    }
}
