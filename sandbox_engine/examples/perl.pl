use strict;
use warnings;

print "Enter your name: ";
my $name = <STDIN> // "";
chomp $name;
print "Hello $name\n";
