//! AAR daemon library.
