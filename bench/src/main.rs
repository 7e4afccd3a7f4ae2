use glommio::{
    io::{DmaFile, OpenOptions},
    LocalExecutorBuilder, Placement,
};
use std::time::Instant;
fn pct(v: &mut Vec<u128>) -> (u128, u128, u128) {
    v.sort();
    let n = v.len();
    (v[n / 2], v[n * 99 / 100], v[n * 999 / 1000])
}
fn main() {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(|| async move {
            let dir = std::env::args().nth(1).unwrap();
            for mode in ["overwrite", "fallocated", "zerofilled", "overwrite-same"] {
                let p = format!("{dir}/probe-{mode}");
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .dma_open(&p)
                    .await
                    .unwrap();
                let size = 64u64 << 20;
                f.pre_allocate(size, false).await.unwrap();
                if mode != "fallocated" {
                    let mut off = 0;
                    while off < size {
                        let mut b = f.alloc_dma_buffer(1 << 20);
                        b.as_bytes_mut().fill(0);
                        f.write_at(b, off).await.unwrap();
                        off += 1 << 20;
                    }
                    f.fdatasync().await.unwrap();
                }
                let mut lat = vec![];
                for i in 0..3000u64 {
                    let mut b = f.alloc_dma_buffer(4096);
                    b.as_bytes_mut().fill(7);
                    let off = if mode == "overwrite-same" {
                        0
                    } else {
                        i * 4096
                    };
                    let t = Instant::now();
                    f.write_at(b, off).await.unwrap();
                    f.fdatasync().await.unwrap();
                    lat.push(t.elapsed().as_micros());
                }
                println!("{mode}: p50/p99/p999 us = {:?}", pct(&mut lat));
                f.close().await.unwrap();
                std::fs::remove_file(&p).unwrap();
            }
        })
        .unwrap()
        .join()
        .unwrap();
}
