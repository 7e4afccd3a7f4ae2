//! lode wire schemas (the flatbuffers schema arrives with the native protocol).
