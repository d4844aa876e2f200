// Where act_quant.wgsl leaves its results in `act` for linear_a8.wgsl (the layout documented
// at META_COUNT in src/gpu/params.rs, which also sizes the buffer): the outlier count, the
// outlier columns ascending, one flag per column, one scale per row (f32 bits).

fn meta_flag(c: u32) -> u32 {
    return META_LIST + p.k + c;
}

fn meta_scale(row: u32) -> u32 {
    return META_LIST + 2u * p.k + row;
}
