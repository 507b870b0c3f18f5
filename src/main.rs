fn main() {
    println!("configmirror {}", configmirror::VERSION);
}
