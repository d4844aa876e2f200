//! `--force` (`Quantizer::overwrite`) replaces only a folder that looks like a checkpoint.

#![cfg(unix)]

mod common;

use std::fs;

use common::TempDir;
use common::square::{quantizer, run_meddling, serial, temp_folders, write_model};
use int8_wgpu::checkpoint::Checkpoint;

/// `--force` replaces only a folder that looks like a checkpoint: once, `quantize --force tiny
/// victim` deleted `victim/thesis.tex` and `victim/deep/data`.
#[test]
fn force_never_deletes_a_folder_that_is_not_a_checkpoint() {
    let _s = serial();
    let (inp, out) = (TempDir::new("victim-in"), TempDir::new("victim-out"));
    write_model(inp.path(), 2, 8);
    let victim = out.path().join("victim");
    fs::create_dir_all(victim.join("deep")).unwrap();
    fs::write(victim.join("deep/data"), "results").unwrap();
    fs::write(victim.join("config.json"), "{}").unwrap();
    let e = quantizer(inp.path(), &victim).overwrite(true).run().unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint error: `{}` holds `deep/data`, which is not part of a checkpoint; --force replaces only a \
             checkpoint folder: remove it yourself or choose another output",
            victim.display()
        )
    );
    fs::write(victim.join("thesis.tex"), "chapter 1").unwrap();
    let e = quantizer(inp.path(), &victim).overwrite(true).run().unwrap_err();
    assert!(e.to_string().contains("holds `deep/data`"), "{e}");
    fs::remove_dir_all(victim.join("deep")).unwrap();
    let e = quantizer(inp.path(), &victim).overwrite(true).run().unwrap_err();
    assert!(e.to_string().contains("holds `thesis.tex`, which is not part of a checkpoint"), "{e}");
    assert_eq!(fs::read_to_string(victim.join("thesis.tex")).unwrap(), "chapter 1");
    assert_eq!(temp_folders(out.path()), Vec::<String>::new());

    // Files a checkpoint folder may hold, but no weights: a Python project, notes, a JSON data set.
    let proj = out.path().join("proj");
    fs::create_dir_all(proj.join("src")).unwrap();
    fs::create_dir_all(proj.join("data")).unwrap();
    fs::write(proj.join("src/train.py"), "print(1)").unwrap();
    fs::write(proj.join("NOTES.md"), "notes").unwrap();
    fs::write(proj.join("data/results.json"), "{}").unwrap();
    fs::write(proj.join("requirements.txt"), "numpy").unwrap();
    let e = quantizer(inp.path(), &proj).overwrite(true).run().unwrap_err();
    assert!(e.to_string().contains("holds no `*.safetensors` file, so it is not a checkpoint folder"), "{e}");
    assert_eq!(fs::read_to_string(proj.join("src/train.py")).unwrap(), "print(1)");
    assert_eq!(temp_folders(out.path()), Vec::<String>::new());

    // A folder that appears during the run is checked at the move into place.
    let late = out.path().join("late");
    let e = run_meddling(quantizer(inp.path(), &late).overwrite(true), || {
        fs::create_dir(&late).unwrap();
        fs::write(late.join("notes.odt"), "mine").unwrap();
    })
    .unwrap_err();
    assert!(e.to_string().contains("holds `notes.odt`"), "{e}");
    assert_eq!(fs::read_to_string(late.join("notes.odt")).unwrap(), "mine");
    assert_eq!(temp_folders(out.path()), Vec::<String>::new());

    // A checkpoint folder (sub-folders such as 1_Pooling, tokenizer files, a model card) is replaced.
    let ckpt = out.path().join("ckpt");
    fs::create_dir_all(ckpt.join("1_Pooling")).unwrap();
    for f in
        ["1_Pooling/config.json", "model.safetensors", "vocab.txt", "tokenizer.model", "README.md", ".gitattributes"]
    {
        fs::write(ckpt.join(f), "old").unwrap();
    }
    quantizer(inp.path(), &ckpt).overwrite(true).run().unwrap();
    assert_eq!(Checkpoint::open(&ckpt).unwrap().quantized_layers(), ["l0", "l1"]);
}
