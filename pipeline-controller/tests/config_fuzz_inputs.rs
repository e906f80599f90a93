//! Runs the fuzz target's body (`fuzz/fuzz_targets/config_body.rs`) on a few inputs, so
//! it compiles and holds without cargo-fuzz.

include!("../fuzz/fuzz_targets/config_body.rs");

#[test]
fn the_fuzz_body_never_panics_on_sample_inputs() {
    let inputs: &[&[u8]] = &[
        b"",
        b"\xff\xfe",
        b"[policy]\ncooldown = \"10s\"\n",
        b"policy:\n  cooldown: 10s\n",
        b"[stages.a]\nbuffer = { initial = 1, min = 1, max = 1 }\n",
        b"stages:\n  a:\n    buffer: { initial: 1, min: 1, max: 1 }\n    droppable: true\n    overflow: drop_oldest\n",
        b"[[[",
        b"- - - :",
        b"policy: &a [*a]",
        b"[controller]\ninterval = \"99999999999999999999s\"\n",
        b"controller:\n  interval: -1s\n",
        b"[policy]\ngrowth_factor = nan\n",
        b"[stages.a]\nworkers = { initial = 18446744073709551615, min = 1, max = 2 }\n",
    ];
    for input in inputs {
        fuzz_one(input);
    }
}
