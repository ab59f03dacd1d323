print "Enter your name: "
name = gets.to_s.chomp
puts "Hello #{name}"
