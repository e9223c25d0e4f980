pub mod green_api;
