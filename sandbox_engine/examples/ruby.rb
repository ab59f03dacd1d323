print "Enter your name: "
$stdout.flush
name = gets.to_s.chomp
puts "Hello #{name}"
