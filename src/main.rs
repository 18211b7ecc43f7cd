fn main() {
    println!("timestream-prometheus-connector: under construction");
}
