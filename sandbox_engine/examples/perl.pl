use strict;
use warnings;

$| = 1;
print "Enter your name: ";
my $name = <STDIN> // "";
chomp $name;
print "Hello $name\n";
